"""Writing points to InfluxDB: the line protocol (:mod:`aedfleet.influx.lines`) and the
batch writer (:mod:`aedfleet.influx.writer`)."""
