"""Notifiers: deliver a notice to a person by email, group-chat robot, webhook or SMS.

:mod:`~alerting.notifiers.base` holds the values (``Notice``, ``RenderedNotice``), the
``Notifier`` port and the error tree; one adapter module per channel
(:mod:`~alerting.notifiers.email`, :mod:`~alerting.notifiers.chat` with
:mod:`~alerting.notifiers.webhook`, :mod:`~alerting.notifiers.sms`) sits behind it, the
HTTP ones sharing :mod:`~alerting.notifiers.transport`;
:mod:`~alerting.notifiers.delivery` renders a notice (:mod:`alerting.render`) and walks
a person's channels until one delivers; :mod:`~alerting.notifiers.setup` builds the
notifiers the settings configure. Nothing is imported here, so that importing
:mod:`alerting.render` (which needs ``base``) does not pull in every adapter.
"""
