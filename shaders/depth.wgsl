// The depth pane: 8-bit relative depth (Depth Anything's disparity, larger = nearer) through a
// perceptual colormap; `range` picks the values shown at the two ends.

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    if outside(in.uv) {
        return BACKGROUND;
    }
    let d = fetch(in.uv, 0u).r;
    let span = params.range.y - params.range.x;
    var t = 0.0;
    if abs(span) > 1e-6 {
        t = (d - params.range.x) / span;
    }
    return vec4<f32>(colormap(t), 1.0);
}
