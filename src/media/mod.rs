//! FFmpeg (ffmpeg-next): probing, frame-exact decoding by frame index ([`decode`]) and H.264
//! encoding.

pub mod cache;
mod convert;
pub mod decode;

use std::path::Path;
use std::sync::Once;

use ffmpeg::{
    codec, encoder, format, frame, software::scaling, util::rational::Rational, Dictionary,
};
use ffmpeg_next as ffmpeg;

use crate::dataset::import::MediaInfo;
use crate::{Error, Result};

static INIT: Once = Once::new();

/// Initialises FFmpeg once and keeps its logging to errors (it writes to stderr otherwise).
pub fn init() {
    INIT.call_once(|| {
        // Only fails when libavformat cannot register; every later call then reports the
        // real error with the file name, so nothing is lost by ignoring it here.
        let _ = ffmpeg::init();
        // Fatal only: after a seek into a B-frame stream the H.264 decoder logs reference
        // warnings at error level for frames that are then dropped; real failures reach the
        // caller as errors with the file name.
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

pub(crate) fn ff(path: &Path, what: &str) -> impl FnOnce(ffmpeg::Error) -> Error {
    let path = path.to_path_buf();
    let what = what.to_string();
    move |source| Error::Ffmpeg { path, what, source }
}

/// Frame count (frames in presentation order, from the demuxer's index), display size and the
/// average frame rate measured from the timestamps.
pub fn probe(path: &Path) -> Result<MediaInfo> {
    if !path.is_file() {
        return Err(Error::NotFound(format!("video file {}", path.display())));
    }
    let idx = decode::build_index(path)?;
    let (width, height) = idx.display_size();
    let (num, den) = idx.time_base;
    let fps = match (idx.pts.first(), idx.pts.last()) {
        (Some(&a), Some(&b)) if b > a && num > 0 && den > 0 => {
            let secs = (b - a) as f64 * f64::from(num) / f64::from(den);
            Some((idx.len() - 1) as f64 / secs)
        }
        _ => None,
    };
    Ok(MediaInfo {
        frames: idx.len() as u32,
        width,
        height,
        fps,
    })
}

/// Writes RGB24 frames to an H.264 mp4 (libx264, yuv420p).
pub struct H264Writer {
    octx: format::context::Output,
    encoder: encoder::Video,
    scaler: scaling::Context,
    rgb: frame::Video,
    yuv: frame::Video,
    stream_tb: Rational,
    enc_tb: Rational,
    next_pts: i64,
    path: std::path::PathBuf,
}

impl H264Writer {
    /// `crf` is x264's quality (lower is better; 18–23 is visually lossless to good).
    pub fn create(path: &Path, width: u32, height: u32, fps: u32, crf: u32) -> Result<H264Writer> {
        init();
        if width % 2 != 0 || height % 2 != 0 {
            return Err(Error::Invalid(format!(
                "{}: yuv420p needs an even size, got {width}×{height}",
                path.display()
            )));
        }
        let mut octx = format::output(&path).map_err(ff(path, "creating the output"))?;
        let codec = encoder::find(codec::Id::H264).ok_or_else(|| {
            Error::Invalid("FFmpeg has no H.264 encoder (install libavcodec with libx264)".into())
        })?;
        let global_header = octx.format().flags().contains(format::Flags::GLOBAL_HEADER);
        let mut enc = codec::context::Context::new_with_codec(codec)
            .encoder()
            .video()
            .map_err(ff(path, "creating the encoder"))?;
        let enc_tb = Rational::new(1, fps as i32);
        enc.set_width(width);
        enc.set_height(height);
        enc.set_format(format::Pixel::YUV420P);
        enc.set_time_base(enc_tb);
        enc.set_frame_rate(Some(Rational::new(fps as i32, 1)));
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = Dictionary::new();
        opts.set("preset", "veryfast");
        opts.set("crf", &crf.to_string());
        // Keep x264 to one thread per writer: the demo runs one writer per core already.
        opts.set("threads", "1");
        let encoder = enc
            .open_as_with(codec, opts)
            .map_err(ff(path, "opening the H.264 encoder"))?;
        {
            let mut ost = octx
                .add_stream(codec)
                .map_err(ff(path, "adding the video stream"))?;
            ost.set_parameters(&encoder);
            ost.set_time_base(enc_tb);
            ost.set_avg_frame_rate(Rational::new(fps as i32, 1));
        }
        octx.write_header()
            .map_err(ff(path, "writing the header"))?;
        let stream_tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(enc_tb);
        let scaler = scaling::Context::get(
            format::Pixel::RGB24,
            width,
            height,
            format::Pixel::YUV420P,
            width,
            height,
            scaling::Flags::BILINEAR,
        )
        .map_err(ff(path, "creating the RGB→YUV converter"))?;
        Ok(H264Writer {
            octx,
            encoder,
            scaler,
            rgb: frame::Video::new(format::Pixel::RGB24, width, height),
            yuv: frame::Video::new(format::Pixel::YUV420P, width, height),
            stream_tb,
            enc_tb,
            next_pts: 0,
            path: path.to_path_buf(),
        })
    }

    /// Appends one frame: `rgb` is `width * height * 3` bytes, row-major.
    pub fn write_rgb(&mut self, rgb: &[u8]) -> Result<()> {
        let (w, h) = (self.rgb.width() as usize, self.rgb.height() as usize);
        if rgb.len() != w * h * 3 {
            return Err(Error::Invalid(format!(
                "{}: frame of {} bytes, expected {w}×{h}×3",
                self.path.display(),
                rgb.len()
            )));
        }
        let stride = self.rgb.stride(0);
        let dst = self.rgb.data_mut(0);
        for y in 0..h {
            dst[y * stride..y * stride + w * 3].copy_from_slice(&rgb[y * w * 3..(y + 1) * w * 3]);
        }
        self.scaler
            .run(&self.rgb, &mut self.yuv)
            .map_err(ff(&self.path, "converting RGB to YUV"))?;
        self.yuv.set_pts(Some(self.next_pts));
        self.next_pts += 1;
        self.encoder
            .send_frame(&self.yuv)
            .map_err(ff(&self.path, "encoding a frame"))?;
        self.drain()
    }

    fn drain(&mut self) -> Result<()> {
        let mut pkt = ffmpeg::Packet::empty();
        while self.encoder.receive_packet(&mut pkt).is_ok() {
            pkt.set_stream(0);
            pkt.rescale_ts(self.enc_tb, self.stream_tb);
            pkt.write_interleaved(&mut self.octx)
                .map_err(ff(&self.path, "writing a packet"))?;
        }
        Ok(())
    }

    /// Flushes the encoder and writes the trailer; returns the number of frames written.
    pub fn finish(mut self) -> Result<u64> {
        self.encoder
            .send_eof()
            .map_err(ff(&self.path, "flushing the encoder"))?;
        self.drain()?;
        self.octx
            .write_trailer()
            .map_err(ff(&self.path, "writing the trailer"))?;
        Ok(self.next_pts as u64)
    }
}

/// `size=…,mtime=…` of a media file: cached derived data made from another version of the
/// file no longer matches.
pub fn file_stamp(path: &Path) -> Result<String> {
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("size={},mtime={mtime}", m.len()))
}

/// The frame index of a dataset video: from the dataset's cache, or built once and cached.
pub fn dataset_index(
    ds: &crate::store::Dataset,
    video: &crate::dataset::Video,
) -> Result<(std::path::PathBuf, decode::FrameIndex)> {
    let path = ds
        .media_path(video)
        .ok_or_else(|| Error::NotFound(format!("media file of video {}", video.vid)))?;
    let stamp = file_stamp(&path)?;
    if let Some(b) = ds.cache_get(&video.vid, "frame_index", &stamp)? {
        if let Some(idx) = decode::FrameIndex::from_bytes(&b) {
            return Ok((path, idx));
        }
    }
    let idx = decode::build_index(&path)?;
    ds.cache_put(&video.vid, "frame_index", &stamp, &idx.to_bytes())?;
    Ok((path, idx))
}

/// Writes an RGB24 frame as a PNG.
pub fn write_png(path: &Path, f: &decode::RgbFrame) -> Result<()> {
    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), f.width, f.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let perr = |e: png::EncodingError| Error::format(path, "png", e.to_string());
    let mut w = enc.write_header().map_err(perr)?;
    w.write_image_data(&f.data).map_err(perr)?;
    w.finish().map_err(perr)
}
