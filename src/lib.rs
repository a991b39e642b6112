//! mgscope: a workbench for micro-gesture recognition research (MM-Gesture in one app).
//!
//! Data flows one way: `media` → `modality` → `nn` → `ensemble` → `app`. `store` persists what
//! the user decides. Everything except `media` (FFmpeg) and `app` (egui) builds with
//! `--no-default-features`, so the core runs on a headless GPU box.

pub mod dataset;
pub mod demo;
pub mod ensemble;
pub mod error;
pub mod inference;
pub mod modality;
pub mod nn;
pub mod pickle;
pub mod store;
pub mod train;
pub mod util;

#[cfg(feature = "video")]
pub mod extract;
#[cfg(feature = "video")]
pub mod media;
#[cfg(feature = "video")]
pub mod stats;

#[cfg(feature = "gui")]
pub mod app;
#[cfg(feature = "gui")]
pub mod render;

pub use error::{Error, Result};
