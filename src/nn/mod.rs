//! candle building blocks for the reference models (PoseConv3D, RGBPoseConv3D, Video Swin).
//! So far: the 3-D operations candle lacks, built from its own ops so autograd works.

pub mod ops3d;
