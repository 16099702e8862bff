//! pvtherm: thermographic inspection of PV plants on an edge box.
//!
//! Data flows one way: a [`source::FrameSource`] yields [`frame::Frame`]s, the
//! [`model`] finds modules and judges defects, [`analysis`] adds temperatures,
//! severity and tracking, and [`publish`] delivers messages over MQTT through a
//! durable outbox. [`service`] ties the daemon to systemd.

// `pub` only where another target (the binary, tests, benches) needs it.
#![warn(unreachable_pub)]

pub mod analysis;
pub mod config;
pub mod config_value;
pub(crate) mod control;
pub(crate) mod crop;
pub(crate) mod decode_limit;
pub(crate) mod dji;
pub mod eval;
pub(crate) mod exif;
pub mod flir;
pub mod formats;
pub mod frame;
pub mod geometry;
pub(crate) mod homeassistant;
pub mod imageio;
pub mod inspect;
pub(crate) mod jpeg;
pub(crate) mod lock;
pub(crate) mod median;
pub mod messages;
pub mod model;
pub mod pipeline;
pub(crate) mod pixels;
pub mod position;
pub mod preflight;
pub(crate) mod provenance;
pub mod publish;
pub(crate) mod radiometric_tiff;
pub mod radiometry;
pub mod render;
pub mod service;
pub mod source;
pub mod survey;
pub mod web;
