//! levee's request path without I/O, shared by the gateway, the edge and
//! replay.

pub mod json_fields;
