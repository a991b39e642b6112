// The RGB pane: the decoded frame as it is (the skeleton is drawn over it by egui).

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    if outside(in.uv) {
        return BACKGROUND;
    }
    return vec4<f32>(fetch(in.uv, 0u).rgb, 1.0);
}
