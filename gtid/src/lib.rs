//! GTID sets: MySQL's textual form, exact interval algebra and the delta
//! encoding streamed from readers to routers. Pure: no I/O, no async.
