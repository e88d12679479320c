"""``aedfleet report``: the fleet as a coordinator sees it, in one self-contained HTML file.

It lives in alerting because it shows what alerting computes, read back from where
alerting leaves it: each cabinet's latest ``readiness`` point in InfluxDB (its state, as
the dashboards show it), and the open alarms in the state store, beside the registry
(districts, positions) and the twins (consumables' dates). It uses alerting's pure cores
(:mod:`alerting.districts`, :mod:`alerting.readiness`) and its way of rendering pages
(Jinja2, autoescaped, Chinese and English); a component of its own would depend on all
of that and add nothing.

- :mod:`~alerting.report.figures`: every number and position on the page (pure);
- :mod:`~alerting.report.sources`: the InfluxDB and state store adapters;
- :mod:`~alerting.report.page`: the HTML, with the map as inline SVG (no tiles, no
  scripts, no external assets: the file opens offline and can be mailed);
- :mod:`~alerting.report.making`: the settings (where the sources are) and the HTML;
  the command line is :mod:`aedfleet_app.report_cli`.
"""
