//! Queues: lease, extend, ack, release, dead-letter (DESIGN 2).
