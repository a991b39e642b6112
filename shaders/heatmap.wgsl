// The joint / limb heatmap panes: the maximum over the channels (what GeneratePoseTarget's
// volume looks like summed up for the eye) or one keypoint / limb, through the colormap.

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    if outside(in.uv) {
        return BACKGROUND;
    }
    var v = 0.0;
    if params.mode == 1u {
        v = fetch(in.uv, min(params.layer, params.layers - 1u)).r;
    } else {
        for (var c = 0u; c < params.layers; c = c + 1u) {
            v = max(v, fetch(in.uv, c).r);
        }
    }
    return vec4<f32>(colormap(v * params.gain.x), 1.0);
}
