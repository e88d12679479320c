"""The fleet report as one HTML page: inline CSS, the map as inline SVG, no scripts and
nothing fetched, so the file opens offline, from an e-mail, years later.

Rendered by Jinja2 from ``alerting/templates/report/`` as alerting renders its pages:
autoescaped (district, site and unit names come from a registry file) and with
:class:`~jinja2.StrictUndefined`, so a misspelt variable fails the render rather than
leaving a blank. Chinese or English, with the generation time in ``time_zone``.
"""

from __future__ import annotations

from typing import Final

import jinja2

from aedfleet.registry import Language
from alerting.phrasing import local_time
from alerting.readiness import CabinetState
from alerting.report.figures import HORIZON_DAYS, FleetReport

# Colours a colour-blind reader still tells apart (Okabe and Ito's palette), and grey for no data.
STATE_COLOURS: Final = {
    CabinetState.READY: "#009e73",
    CabinetState.NOT_READY: "#d55e00",
    CabinetState.OFFLINE: "#56b4e9",
    CabinetState.IN_USE: "#cc79a7",
}
NO_DATA_COLOUR: Final = "#999999"

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("alerting", "templates/report"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def render_page(report: FleetReport, language: Language, time_zone: str) -> str:
    """The report as a complete HTML document in ``language``."""
    return _templates.get_template("fleet.html.j2").render(
        report=report,
        lang=language.value,
        generated=local_time(report.generated_at, time_zone),
        time_zone=time_zone,
        states=list(CabinetState),
        colours={state.value: colour for state, colour in STATE_COLOURS.items()},
        no_data_colour=NO_DATA_COLOUR,
        horizons=HORIZON_DAYS,
    )
