//! Decoded frame → RGB24 through swscale's frame API.
//!
//! ffmpeg-next's `scaling::Context::run` calls `sws_scale`, which converts on the calling
//! thread only. `sws_scale_frame` (FFmpeg ≥ 5.0) cuts the picture into slices and runs them on
//! the context's own threads when the context was built with `threads` ≠ 1, which is how the
//! `ffmpeg` CLI's scale filter converts; the pixels are the same (the tests compare with the
//! CLI's `-pix_fmt rgb24` output), only the wall time changes. The output frame is allocated
//! once per converter.

use std::ffi::CString;

use ffmpeg::{ffi, format, frame};
use ffmpeg_next as ffmpeg;

/// Converter threads: `MGSCOPE_RGB_THREADS` (0 = one per core), else 1. On this 2-core machine
/// the decoder's two frame threads already fill the cores during sequential decoding, and slice
/// threads measured no faster there; random access (decoder idle during the conversion) and
/// machines with more cores are where more threads can pay.
fn rgb_threads() -> i64 {
    std::env::var("MGSCOPE_RGB_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|&n| n >= 0)
        .unwrap_or(1)
}

/// A bicubic same-size converter from one input format and size to RGB24.
pub(crate) struct RgbConverter {
    ctx: *mut ffi::SwsContext,
    /// Reused for every frame: a fresh 2.7 MB output per 720p frame went back to the kernel
    /// on free and was faulted in again, which cost more than the conversion itself (perf:
    /// 13 % of the decode bench in the kernel, 1.7 % in swscale).
    dst: frame::Video,
    pub format: format::Pixel,
    pub width: u32,
    pub height: u32,
}

impl RgbConverter {
    pub fn new(
        format: format::Pixel,
        width: u32,
        height: u32,
    ) -> std::result::Result<Self, ffmpeg::Error> {
        // SAFETY: the context is allocated here and owned by `conv` (freed by Drop on every
        // error path); options are set before `sws_init_context`, as swscale requires.
        unsafe {
            let dst = frame::Video::new(format::Pixel::RGB24, width, height);
            let ctx = ffi::sws_alloc_context();
            if dst.is_empty() || ctx.is_null() {
                ffi::sws_freeContext(ctx); // accepts null
                return Err(ffmpeg::Error::Other {
                    errno: libc::ENOMEM,
                });
            }
            let conv = RgbConverter {
                ctx,
                dst,
                format,
                width,
                height,
            };
            let src_fmt = ffi::AVPixelFormat::from(format) as i64;
            let dst_fmt = ffi::AVPixelFormat::AV_PIX_FMT_RGB24 as i64;
            let opts: [(&str, i64); 8] = [
                ("srcw", width as i64),
                ("srch", height as i64),
                ("src_format", src_fmt),
                ("dstw", width as i64),
                ("dsth", height as i64),
                ("dst_format", dst_fmt),
                // Bicubic with default parameters: what the CLI's auto-inserted converter uses.
                ("sws_flags", ffi::SWS_BICUBIC as i64),
                ("threads", rgb_threads()),
            ];
            for (name, value) in opts {
                let key = CString::new(name).map_err(|_| ffmpeg::Error::Bug)?;
                let r = ffi::av_opt_set_int(conv.ctx.cast(), key.as_ptr(), value, 0);
                if r < 0 {
                    return Err(ffmpeg::Error::from(r));
                }
            }
            let r = ffi::sws_init_context(conv.ctx, std::ptr::null_mut(), std::ptr::null_mut());
            if r < 0 {
                return Err(ffmpeg::Error::from(r));
            }
            Ok(conv)
        }
    }

    /// Converts `src` (of this converter's format and size); the RGB24 result is valid until
    /// the next call.
    pub fn run(&mut self, src: &frame::Video) -> std::result::Result<&frame::Video, ffmpeg::Error> {
        if src.format() != self.format || src.width() != self.width || src.height() != self.height {
            return Err(ffmpeg::Error::InvalidData);
        }
        // SAFETY: both frames are valid AVFrames; `dst` was allocated with the context's output
        // format and size, so swscale writes into its buffer.
        let r = unsafe { ffi::sws_scale_frame(self.ctx, self.dst.as_mut_ptr(), src.as_ptr()) };
        if r < 0 {
            return Err(ffmpeg::Error::from(r));
        }
        Ok(&self.dst)
    }
}

impl Drop for RgbConverter {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from `sws_alloc_context` and is freed once, here.
        unsafe { ffi::sws_freeContext(self.ctx) }
    }
}
