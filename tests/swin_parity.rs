//! Video Swin against mmaction2 1.2 (`mmaction/models/backbones/swin.py` + `I3DHead`):
//! logits on the fixtures written by `tools/make_swin_fixtures.py`, and the parameter names
//! and shapes of the released Swin-T/S/B configs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use mgscope::nn::checkpoint::{build_model, StateDict};
use mgscope::nn::swin3d::{relative_position_index, Config, VideoSwin};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

fn triple(v: &Value) -> Result<(usize, usize, usize)> {
    let a = usizes(v)?;
    match a.as_slice() {
        [x, y, z] => Ok((*x, *y, *z)),
        _ => bail!("expected three numbers, got {v}"),
    }
}

fn usizes(v: &Value) -> Result<Vec<usize>> {
    v.as_array()
        .context("expected an array")?
        .iter()
        .map(|x| {
            x.as_u64()
                .map(|x| x as usize)
                .context("expected an integer")
        })
        .collect()
}

fn config_from_json(path: &Path) -> Result<Config> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let num = |k: &str| v[k].as_u64().map(|x| x as usize).context(k.to_string());
    let float = |k: &str| v[k].as_f64().context(k.to_string());
    let flag = |k: &str| v[k].as_bool().context(k.to_string());
    Ok(Config {
        patch_size: triple(&v["patch_size"])?,
        in_channels: num("in_channels")?,
        embed_dim: num("embed_dim")?,
        depths: usizes(&v["depths"])?,
        num_heads: usizes(&v["num_heads"])?,
        window_size: triple(&v["window_size"])?,
        mlp_ratio: float("mlp_ratio")?,
        qkv_bias: flag("qkv_bias")?,
        patch_norm: flag("patch_norm")?,
        num_classes: num("num_classes")?,
        drop_path_rate: float("drop_path_rate")?,
    })
}

/// Runs one fixture folder; returns (max abs diff, max diff / max(1, |ref|)).
fn run_case(dir: &Path) -> Result<(f32, f32)> {
    let dev = Device::Cpu;
    let cfg = config_from_json(&dir.join("config.json"))?;
    // The mmaction2 checkpoint itself, through the strict loader: every key must match.
    let sd = StateDict::read(&dir.join("model.pth"))?;
    let (model, report) = build_model(&sd, true, DType::F32, &dev, |vb| VideoSwin::new(&cfg, vb))?;
    assert!(report.is_clean(), "{report}");

    // The recomputed index equals the checkpoint's buffer.
    let want = relative_position_index(cfg.window_size);
    let key = "backbone.layers.0.blocks.0.attn.relative_position_index";
    let buf = sd
        .tensors
        .get(key)
        .with_context(|| format!("{key} missing"))?;
    let got: Vec<i64> = buf.flatten_all()?.to_vec1()?;
    assert_eq!(got.len(), want.len());
    assert!(got.iter().zip(&want).all(|(a, b)| *a == i64::from(*b)));

    let x = Tensor::read_npy(dir.join("input.npy"))?;
    let reference = Tensor::read_npy(dir.join("logits.npy"))?;
    let t0 = std::time::Instant::now();
    let y = model.forward(&x)?;
    let elapsed = t0.elapsed();
    assert_eq!(y.dims(), reference.dims());
    let y: Vec<f32> = y.flatten_all()?.to_vec1()?;
    let r: Vec<f32> = reference.flatten_all()?.to_vec1()?;
    let (mut abs, mut rel) = (0f32, 0f32);
    for (a, b) in y.iter().zip(&r) {
        let d = (a - b).abs();
        abs = abs.max(d);
        rel = rel.max(d / b.abs().max(1.0));
    }
    println!(
        "{}: input {:?}, max |diff| {abs:.3e}, max |diff|/max(1,|ref|) {rel:.3e}, forward {elapsed:?}",
        dir.display(),
        x.dims()
    );
    Ok((abs, rel))
}

#[test]
fn swin_small_shift_matches_mmaction2() -> Result<()> {
    let (_, rel) = run_case(&fixtures().join("swin_small_shift"))?;
    assert!(rel <= 1e-4, "relative error {rel}");
    Ok(())
}

#[test]
fn swin_short_clip_matches_mmaction2() -> Result<()> {
    let (_, rel) = run_case(&fixtures().join("swin_short_clip"))?;
    assert!(rel <= 1e-4, "relative error {rel}");
    Ok(())
}

/// Real Swin-T (window 8×7×7) on random weights; too big for the repository. Write it with
/// `make_swin_fixtures.py --big DIR` and run with `SWIN_BIG_FIXTURE=DIR/swin_t_big`.
#[test]
#[ignore]
fn swin_t_big_matches_mmaction2() -> Result<()> {
    let dir = std::env::var("SWIN_BIG_FIXTURE").context("set SWIN_BIG_FIXTURE")?;
    let (_, rel) = run_case(Path::new(&dir))?;
    assert!(rel <= 1e-4, "relative error {rel}");
    Ok(())
}

fn requested_keys(cfg: &Config) -> Result<BTreeMap<String, Vec<usize>>> {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    VideoSwin::new(cfg, vb)?;
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.dims().to_vec()))
        .collect())
}

#[test]
fn full_configs_request_exactly_the_checkpoint_keys() -> Result<()> {
    for (tag, cfg) in [
        ("t", Config::swin_t()),
        ("s", Config::swin_s()),
        ("b", Config::swin_b()),
    ] {
        let path = fixtures().join(format!("full_keys/swin_{tag}.json"));
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let want: BTreeMap<String, Vec<usize>> = v
            .as_object()
            .context("object")?
            .iter()
            .filter(|(k, _)| {
                !k.ends_with("relative_position_index") && !k.ends_with("num_batches_tracked")
            })
            .map(|(k, s)| Ok((k.clone(), usizes(s)?)))
            .collect::<Result<_>>()?;
        let got = requested_keys(&cfg)?;
        let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
        assert!(missing.is_empty(), "swin_{tag}: not requested: {missing:?}");
        assert!(
            extra.is_empty(),
            "swin_{tag}: not in the checkpoint: {extra:?}"
        );
        for (k, s) in &want {
            assert_eq!(&got[k], s, "swin_{tag}: shape of {k}");
        }
        let params: usize = got.values().map(|s| s.iter().product::<usize>()).sum();
        println!("swin_{tag}: {} keys, {params} parameters", got.len());
        if tag == "t" {
            // models.md §4.4: backbone 27,850,470 + head 307,600.
            assert_eq!(params, 28_158_070);
        }
    }
    Ok(())
}
