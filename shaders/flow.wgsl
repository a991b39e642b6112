// The optical-flow pane: the Middlebury colour wheel (Baker et al. 2011, computeColor) exactly
// as src/modality/flow_vis.rs codes it on the CPU, each vector divided by `flow_max`.

const RY: i32 = 15;
const YG: i32 = 6;
const GC: i32 = 4;
const CB: i32 = 11;
const BM: i32 = 13;
const MR: i32 = 6;
const NCOLS: i32 = 55;
const PI: f32 = 3.14159265358979;

// The wheel's colour k, 0..255, with the integer ramps of makecolorwheel.
fn wheel(k_in: i32) -> vec3<f32> {
    var k = k_in;
    if k < RY { return vec3<f32>(255.0, f32(255 * k / RY), 0.0); }
    k = k - RY;
    if k < YG { return vec3<f32>(255.0 - f32(255 * k / YG), 255.0, 0.0); }
    k = k - YG;
    if k < GC { return vec3<f32>(0.0, 255.0, f32(255 * k / GC)); }
    k = k - GC;
    if k < CB { return vec3<f32>(0.0, 255.0 - f32(255 * k / CB), 255.0); }
    k = k - CB;
    if k < BM { return vec3<f32>(f32(255 * k / BM), 0.0, 255.0); }
    k = k - BM;
    return vec3<f32>(255.0, 0.0, 255.0 - f32(255 * k / MR));
}

@fragment
fn fs_main(in: VsOut) -> @location(0) vec4<f32> {
    if outside(in.uv) {
        return BACKGROUND;
    }
    let f = fetch(in.uv, 0u).xy / max(params.flow_max, 1e-6);
    let rad = length(f);
    let a = atan2(-f.y, -f.x) / PI;
    let fk = (a + 1.0) / 2.0 * f32(NCOLS - 1);
    let k0 = clamp(i32(floor(fk)), 0, NCOLS - 1);
    let k1 = (k0 + 1) % NCOLS;
    let w = fk - f32(k0);
    var col = ((1.0 - w) * wheel(k0) + w * wheel(k1)) / 255.0;
    if rad <= 1.0 {
        col = 1.0 - rad * (1.0 - col);
    } else {
        col = col * 0.75;
    }
    // The CPU code floors 255·col; an exact level/255 survives the target's rounding.
    return vec4<f32>(floor(col * 255.0) / 255.0, 1.0);
}
