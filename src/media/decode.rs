//! Frame-exact decoding by frame index.
//!
//! Frame `i` is the i-th frame in presentation order. The index is built once by demuxing the
//! video stream (no decoding): each packet's presentation timestamp, in decode order, and which
//! packets are keyframes. A random access seeks to the latest keyframe, in decode order before
//! the target's packet, whose timestamp is not after the target's (so an open GOP's leading
//! frames are never decoded from the wrong side), then decodes forward until the frame whose
//! timestamp equals the target's. The frame returned is matched by timestamp, never by a count
//! or by seconds, so B-frames, variable frame rates and a non-zero start time need no special
//! case.

use std::path::{Path, PathBuf};

use ffmpeg::{codec, format, frame, util::rational::Rational};
use ffmpeg_next as ffmpeg;

use super::convert::RgbConverter;
use super::{ff, init};
use crate::{Error, Result};

/// One decoded frame as RGB24, row-major, no padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbFrame {
    pub index: usize,
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// What the demuxer says about every frame, computed once per video and cacheable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameIndex {
    /// Presentation timestamp of frame `i` (stream time base), ascending.
    pub pts: Vec<i64>,
    /// For frame `i`, the timestamp to seek to: its decoding keyframe's pts.
    pub seek_pts: Vec<i64>,
    /// Positions (frame indices) of keyframes, ascending.
    pub keyframes: Vec<usize>,
    pub time_base: (i32, i32),
    pub width: u32,
    pub height: u32,
    /// Clockwise rotation the display matrix asks for: 0, 90, 180 or 270.
    pub rotation: u32,
}

impl FrameIndex {
    pub fn len(&self) -> usize {
        self.pts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pts.is_empty()
    }

    /// Size of the frames as returned (after rotation).
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.height, self.width)
        } else {
            (self.width, self.height)
        }
    }

    /// Compact binary form for the dataset cache: little-endian i64/u32 fields.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.pts.len() * 17);
        out.extend_from_slice(b"MGFI1");
        for v in [
            self.time_base.0 as i64,
            self.time_base.1 as i64,
            i64::from(self.width),
            i64::from(self.height),
            i64::from(self.rotation),
            self.pts.len() as i64,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for i in 0..self.pts.len() {
            out.extend_from_slice(&self.pts[i].to_le_bytes());
            out.extend_from_slice(&self.seek_pts[i].to_le_bytes());
            out.push(u8::from(self.keyframes.binary_search(&i).is_ok()));
        }
        out
    }

    pub fn from_bytes(b: &[u8]) -> Option<FrameIndex> {
        let body = b.strip_prefix(b"MGFI1")?;
        let word = |k: usize| -> Option<i64> {
            body.get(k * 8..k * 8 + 8)
                .and_then(|s| s.try_into().ok())
                .map(i64::from_le_bytes)
        };
        let n = usize::try_from(word(5)?).ok()?;
        let rec = body.get(48..)?;
        if rec.len() != n.checked_mul(17)? {
            return None;
        }
        let mut idx = FrameIndex {
            pts: Vec::with_capacity(n),
            seek_pts: Vec::with_capacity(n),
            keyframes: Vec::new(),
            time_base: (word(0)? as i32, word(1)? as i32),
            width: word(2)? as u32,
            height: word(3)? as u32,
            rotation: word(4)? as u32,
        };
        for (i, r) in rec.chunks_exact(17).enumerate() {
            idx.pts.push(i64::from_le_bytes(r[0..8].try_into().ok()?));
            idx.seek_pts
                .push(i64::from_le_bytes(r[8..16].try_into().ok()?));
            if r[16] == 1 {
                idx.keyframes.push(i);
            }
        }
        Some(idx)
    }
}

fn rotation_of(stream: &format::stream::Stream<'_>) -> u32 {
    for sd in stream.side_data() {
        if sd.kind() == codec::packet::side_data::Type::DisplayMatrix && sd.data().len() >= 36 {
            // The display matrix rotates counter-clockwise by this many degrees
            // (libavutil/display.c); FFmpeg's CLI turns the picture back the other way.
            let m = sd.data().as_ptr() as *const i32;
            // SAFETY: the side data holds 9 i32 (36 bytes, checked above); av_display_rotation_get
            // only reads them.
            let deg = unsafe { ffmpeg::ffi::av_display_rotation_get(m) };
            if deg.is_finite() {
                let cw = (-deg).rem_euclid(360.0);
                return ((cw / 90.0).round() as u32 % 4) * 90;
            }
        }
    }
    0
}

/// Builds the frame index by demuxing `path`.
pub fn build_index(path: &Path) -> Result<FrameIndex> {
    init();
    let mut ictx = format::input(&path).map_err(ff(path, "opening as a video"))?;
    let stream = ictx
        .streams()
        .best(ffmpeg::media::Type::Video)
        .ok_or_else(|| Error::format(path, "streams", "has no video stream"))?;
    let si = stream.index();
    let tb = stream.time_base();
    let rotation = rotation_of(&stream);
    let ctx = codec::context::Context::from_parameters(stream.parameters())
        .map_err(ff(path, "reading codec parameters"))?;
    let dec = ctx
        .decoder()
        .video()
        .map_err(ff(path, "opening the video decoder"))?;
    let (width, height) = (dec.width(), dec.height());
    // (pts, is_key) in decode order.
    let mut packets: Vec<(i64, bool)> = Vec::new();
    let mut last_dts: Option<i64> = None;
    for (s, p) in ictx.packets() {
        if s.index() != si {
            continue;
        }
        // Streams without pts (raw AVI H.264, some MPEG-TS) have dts; frames then come out in
        // dts order, which is presentation order for those codecs.
        let ts = p
            .pts()
            .or(p.dts())
            .or_else(|| last_dts.map(|d| d + 1))
            .unwrap_or(packets.len() as i64);
        last_dts = p.dts().or(Some(ts));
        packets.push((ts, p.is_key()));
    }
    if packets.is_empty() {
        return Err(Error::format(path, "video stream", "contains no frames"));
    }
    // For each packet: the latest keyframe at or before it in decode order whose pts is not
    // after the packet's pts.
    let mut keys_so_far: Vec<i64> = Vec::new();
    let mut by_pts: Vec<(i64, i64, bool)> = Vec::with_capacity(packets.len());
    for &(pts, key) in &packets {
        if key {
            keys_so_far.push(pts);
        }
        let seek = keys_so_far
            .iter()
            .rev()
            .find(|&&k| k <= pts)
            .copied()
            .unwrap_or(i64::MIN);
        by_pts.push((pts, seek, key));
    }
    by_pts.sort_by_key(|&(pts, _, _)| pts);
    by_pts.dedup_by_key(|e| e.0);
    let mut idx = FrameIndex {
        pts: Vec::with_capacity(by_pts.len()),
        seek_pts: Vec::with_capacity(by_pts.len()),
        keyframes: Vec::new(),
        time_base: (tb.numerator(), tb.denominator()),
        width,
        height,
        rotation,
    };
    for (i, (pts, seek, key)) in by_pts.into_iter().enumerate() {
        idx.pts.push(pts);
        idx.seek_pts.push(seek);
        if key {
            idx.keyframes.push(i);
        }
    }
    Ok(idx)
}

/// A video opened for frame-exact access. Not `Sync`: one per thread.
pub struct VideoReader {
    path: PathBuf,
    ictx: format::context::Input,
    decoder: codec::decoder::Video,
    stream_index: usize,
    index: FrameIndex,
    scaler: Option<RgbConverter>,
    /// Index of the last frame returned when the decoder is positioned right after it.
    cursor: Option<usize>,
    /// Frames decoded but not yet asked for (the decoder can hand out several per packet).
    pending: std::collections::VecDeque<frame::Video>,
    eof_sent: bool,
    /// Whether the decoder currently discards non-reference frames (see `next_decoded`).
    skipping: bool,
    /// `MGSCOPE_DECODE_SKIP=0` decodes every frame on the way to a target (for A/B timing).
    skip_nonref: bool,
}

impl VideoReader {
    pub fn open(path: &Path) -> Result<VideoReader> {
        let index = build_index(path)?;
        Self::open_with_index(path, index)
    }

    /// Opens with an index from the dataset cache (skips the demux pass).
    pub fn open_with_index(path: &Path, index: FrameIndex) -> Result<VideoReader> {
        init();
        let ictx = format::input(&path).map_err(ff(path, "opening as a video"))?;
        let stream = ictx
            .streams()
            .best(ffmpeg::media::Type::Video)
            .ok_or_else(|| Error::format(path, "streams", "has no video stream"))?;
        let stream_index = stream.index();
        let mut ctx = codec::context::Context::from_parameters(stream.parameters())
            .map_err(ff(path, "reading codec parameters"))?;
        // Two frame threads: measured on 2 cores, more threads only add pipeline latency to
        // every random access (each seek flushes and refills the pipeline).
        // `MGSCOPE_DECODE_THREADS=N` overrides it for A/B timing.
        ctx.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Frame,
            count: std::env::var("MGSCOPE_DECODE_THREADS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(2),
            ..Default::default()
        });
        let decoder = ctx
            .decoder()
            .video()
            .map_err(ff(path, "opening the video decoder"))?;
        Ok(VideoReader {
            path: path.to_path_buf(),
            ictx,
            decoder,
            stream_index,
            index,
            scaler: None,
            cursor: None,
            pending: Default::default(),
            eof_sent: false,
            skipping: false,
            skip_nonref: std::env::var("MGSCOPE_DECODE_SKIP").map_or(true, |v| v != "0"),
        })
    }

    pub fn index(&self) -> &FrameIndex {
        &self.index
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Exactly the i-th frame in presentation order.
    pub fn frame(&mut self, i: usize) -> Result<RgbFrame> {
        let target = *self.index.pts.get(i).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: frame {i} is out of range (the video has {} frames)",
                self.path.display(),
                self.index.len()
            ))
        })?;
        // Decoding on from the current position reaches any later frame of the same GOP (its
        // keyframe is at or before where the decoder stands) cheaper than a seek; a few frames
        // across a GOP boundary too.
        let forward = self
            .cursor
            .is_some_and(|c| i > c && (self.index.seek_pts[i] <= self.index.pts[c] || i - c <= 8));
        if !forward {
            self.seek_for(i)?;
        }
        let mut seeks_back = 0;
        loop {
            match self.next_decoded(Some(target))? {
                Some(f) => {
                    let ts = f.timestamp().or(f.pts());
                    match ts {
                        Some(t) if t == target => {
                            self.cursor = Some(i);
                            return self.convert_rgb(&f, i);
                        }
                        Some(t) if t > target && seeks_back < 3 => {
                            // The seek landed after the target (an index entry the demuxer
                            // rounds differently): go back one more keyframe.
                            seeks_back += 1;
                            self.seek_before(i, seeks_back)?;
                        }
                        _ => {}
                    }
                }
                None => {
                    self.cursor = None;
                    return Err(Error::Invalid(format!(
                        "{}: frame {i} (pts {target}) could not be decoded: the stream ended or is damaged before it",
                        self.path.display()
                    )));
                }
            }
        }
    }

    fn seek_to_ts(&mut self, ts: i64) -> Result<()> {
        let si = self.stream_index as i32;
        // "From the start" is the earliest timestamp, not i64::MIN: some demuxers (mov) answer
        // a seek far before the first sample by landing on the last keyframe.
        let first = self.index.pts.first().copied().unwrap_or(0);
        let ts = ts.max(first);
        // SAFETY: the context pointer is valid for the life of `ictx`; av_seek_frame only uses it
        // during the call.
        let r = unsafe {
            ffmpeg::ffi::av_seek_frame(
                self.ictx.as_mut_ptr(),
                si,
                ts,
                ffmpeg::ffi::AVSEEK_FLAG_BACKWARD,
            )
        };
        if r < 0 {
            // Some demuxers refuse a timestamp seek; start from the beginning instead.
            // SAFETY: as above.
            let r0 = unsafe {
                ffmpeg::ffi::avformat_seek_file(
                    self.ictx.as_mut_ptr(),
                    si,
                    i64::MIN,
                    first,
                    first,
                    ffmpeg::ffi::AVSEEK_FLAG_BACKWARD,
                )
            };
            if r0 < 0 {
                return Err(Error::Ffmpeg {
                    path: self.path.clone(),
                    what: "seeking".into(),
                    source: ffmpeg::Error::from(r0),
                });
            }
        }
        self.decoder.flush();
        self.pending.clear();
        self.eof_sent = false;
        self.cursor = None;
        Ok(())
    }

    fn seek_for(&mut self, i: usize) -> Result<()> {
        self.seek_to_ts(self.index.seek_pts[i])
    }

    /// Seeks `steps` keyframes earlier than the one `seek_for` would use.
    fn seek_before(&mut self, i: usize, steps: usize) -> Result<()> {
        let ts = self.index.seek_pts[i];
        let pos = self
            .index
            .keyframes
            .iter()
            .rposition(|&k| self.index.pts[k] <= ts)
            .unwrap_or(0);
        let k = pos.saturating_sub(steps);
        let ts = self
            .index
            .keyframes
            .get(k)
            .map(|&f| self.index.pts[f])
            .filter(|_| pos >= steps)
            .unwrap_or(i64::MIN);
        self.seek_to_ts(ts)
    }

    /// The next frame out of the decoder, feeding it packets as needed; `None` at the end.
    ///
    /// On the way to `target`, a packet whose frame is shown before the target is decoded with
    /// `skip_frame = AVDISCARD_NONREF`: if no other frame references it, the decoder drops it
    /// without decoding, which is exact (nothing depends on it and it is not the target) and
    /// spares the B-frames between a keyframe and the target. The setting is per packet (frame
    /// threads copy it when a packet is submitted).
    fn next_decoded(&mut self, target: Option<i64>) -> Result<Option<frame::Video>> {
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(f));
            }
            let mut f = frame::Video::empty();
            if self.decoder.receive_frame(&mut f).is_ok() {
                return Ok(Some(f));
            }
            if self.eof_sent {
                return Ok(None);
            }
            let mut fed = false;
            while let Some((s, p)) = self.ictx.packets().next() {
                if s.index() != self.stream_index {
                    continue;
                }
                let skip =
                    self.skip_nonref && target.is_some_and(|t| p.pts().is_some_and(|pts| pts < t));
                if skip != self.skipping {
                    self.decoder.skip_frame(if skip {
                        ffmpeg::Discard::NonReference
                    } else {
                        ffmpeg::Discard::Default
                    });
                    self.skipping = skip;
                }
                // A damaged packet is skipped: the frames before the damage stay available
                // and the ones it breaks are reported by `frame`.
                let _ = self.decoder.send_packet(&p);
                fed = true;
                break;
            }
            if !fed {
                let _ = self.decoder.send_eof();
                self.eof_sent = true;
            }
        }
    }

    fn convert_rgb(&mut self, f: &frame::Video, index: usize) -> Result<RgbFrame> {
        let (w, h, fmt) = (f.width(), f.height(), f.format());
        let conv = match self.scaler.take() {
            Some(c) if c.format == fmt && c.width == w && c.height == h => c,
            _ => RgbConverter::new(fmt, w, h)
                .map_err(ff(&self.path, "creating the RGB converter"))?,
        };
        let conv = self.scaler.insert(conv);
        let rgb = conv.run(f).map_err(ff(&self.path, "converting to RGB"))?;
        let stride = rgb.stride(0);
        let src = rgb.data(0);
        let (wu, hu) = (w as usize, h as usize);
        let mut data = Vec::with_capacity(wu * hu * 3);
        for y in 0..hu {
            data.extend_from_slice(&src[y * stride..y * stride + wu * 3]);
        }
        let (data, w, h) = rotate(data, w, h, self.index.rotation);
        Ok(RgbFrame {
            index,
            width: w,
            height: h,
            data,
        })
    }

    /// Decodes every frame from the start without converting to RGB; returns the count.
    /// The decoder's own cost, for benchmarks against `ffmpeg -f null`.
    pub fn decode_all_raw(&mut self) -> Result<usize> {
        self.seek_to_ts(i64::MIN)?;
        let mut n = 0;
        while self.next_decoded(None)?.is_some() {
            n += 1;
        }
        self.cursor = None;
        Ok(n)
    }

    pub fn time_base(&self) -> Rational {
        Rational::new(self.index.time_base.0, self.index.time_base.1)
    }
}

/// Rotates an RGB24 image clockwise by 0/90/180/270 degrees.
pub fn rotate(data: Vec<u8>, w: u32, h: u32, cw: u32) -> (Vec<u8>, u32, u32) {
    let (wu, hu) = (w as usize, h as usize);
    match cw {
        90 | 180 | 270 => {
            let mut out = vec![0u8; data.len()];
            for y in 0..hu {
                for x in 0..wu {
                    let (nx, ny, nw) = match cw {
                        90 => (hu - 1 - y, x, hu),
                        180 => (wu - 1 - x, hu - 1 - y, wu),
                        _ => (y, wu - 1 - x, hu),
                    };
                    let s = (y * wu + x) * 3;
                    let d = (ny * nw + nx) * 3;
                    out[d..d + 3].copy_from_slice(&data[s..s + 3]);
                }
            }
            if cw == 180 {
                (out, w, h)
            } else {
                (out, h, w)
            }
        }
        _ => (data, w, h),
    }
}
