//! Derived modalities: skeleton heatmaps (exact GeneratePoseTarget port) and the pose pipeline
//! steps around it, Taylor videos, depth; plus NPY files for their inputs and outputs.

pub mod depth;
pub mod error;
pub mod flow;
pub mod flow_vis;
pub mod heatmap;
pub mod npy;
pub mod pose_pipeline;
pub mod taylor;
