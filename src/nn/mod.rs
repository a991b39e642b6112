//! candle building blocks for the reference models (PoseConv3D, RGBPoseConv3D, Video Swin,
//! Depth Anything V2 on DINOv2):
//! the 3-D operations candle lacks, built from its own ops so autograd works, and
//! PoseC3D's ResNet3dSlowOnly + I3DHead named by the checkpoint keys.

pub mod checkpoint;
pub mod depth_anything_v2;
pub mod dinov2;
pub mod interp;
pub mod models;
pub mod ops3d;
pub mod predict;
pub mod resnet3d;
pub mod rgbpose;
pub mod rgbpose_merge;
pub mod swin3d;
pub mod video_views;
