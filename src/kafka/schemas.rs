//! The ESS streaming-data-types messages this engine sends and reads, from the
//! `isis_streaming_data_types` crate: the code flatc 25.12.19 generated from the schemas of
//! ess-dmsc/streaming-data-types, kept by ISIS (their `.fbs` files for these seven are the
//! ESS ones; 6s4t has one more field at its end, `abort`, default false, which a builder
//! leaves out of the message while it is false).
//!
//! Only the schemas in use are named here: ev44 (events), da00 (data arrays), pl72 and 6s4t
//! (run start and stop), f144 (slow values), al00 (alarms), x5f2 (status).

pub use isis_streaming_data_types::flatbuffers_generated::{
    alarm_al00 as al00, dataarray_da00 as da00, events_ev44 as ev44, logdata_f144 as f144,
    run_start_pl72 as pl72, run_stop_6s4t, status_x5f2 as x5f2,
};
