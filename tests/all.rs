//! One integration-test binary for the whole suite: each file under tests/ is a module here, so
//! the library and its dependencies are linked once instead of once per file (CI time and disk).

mod common;

mod app_kittest;
mod bad_input;
mod checkpoint;
mod decode;
mod durability;
mod ensemble_cli;
mod extract;
mod models_cli;
mod panes_gpu;
mod predict_cli;
mod probe_cli;
mod pyskl_fixtures;
mod real_data;
mod resnet3d_parity;
mod rgbpose_merge;
mod roundtrip;
mod stats_cli;
mod swin_parity;
mod train;
