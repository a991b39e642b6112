// The Taylor pane: the three channels of a Taylor frame (orders 1..K, 2..K+1, 3..K+2), each
// with its own gain, or one channel alone through the colormap.

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    if outside(in.uv) {
        return BACKGROUND;
    }
    let c = fetch(in.uv, 0u).rgb * params.gain.rgb;
    if params.mode == 0u {
        return vec4<f32>(clamp(c, vec3<f32>(0.0), vec3<f32>(1.0)), 1.0);
    }
    return vec4<f32>(colormap(c[min(params.mode - 1u, 2u)]), 1.0);
}
