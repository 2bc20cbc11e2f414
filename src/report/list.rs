//! `cardplan list`: the catalog as terminal tables.

use comfy_table::Table;

use super::table::new_table;
use crate::catalog::model::ModelArch;
use crate::catalog::quant::Quant;
use crate::profile::GpuProfile;

/// GPUs with their datasheet roofs, price and whether their kernels were measured.
pub fn gpus(gpus: &[GpuProfile]) -> Table {
    let mut t = new_table();
    t.set_header(vec![
        "key",
        "name",
        "memory",
        "GB/s",
        "fp16 TFLOP/s",
        "int8 TOP/s",
        "$/h",
        "profile",
    ]);
    for g in gpus {
        let d = &g.datasheet;
        t.add_row(vec![
            g.key.clone(),
            g.name.clone(),
            format!("{:.0} GiB", d.memory_mib as f64 / 1024.0),
            format!("{}", d.bandwidth_gbs),
            format!("{}", d.fp16_tflops),
            format!("{}", d.int8_tops),
            format!("{:.2}", d.price_per_hour),
            if g.measured.is_some() {
                "measured".into()
            } else {
                "derived".into()
            },
        ]);
    }
    t
}

/// Models with their size and shape.
pub fn models(models: &[ModelArch]) -> Table {
    let mut t = new_table();
    t.set_header(vec![
        "key", "params", "layers", "hidden", "heads/kv", "context", "source",
    ]);
    for m in models {
        t.add_row(vec![
            m.key.clone(),
            match m.moe {
                Some(_) => format!(
                    "{:.2} B ({:.2} B active)",
                    m.params().total() as f64 / 1e9,
                    m.active_params() as f64 / 1e9
                ),
                None => format!("{:.2} B", m.params().total() as f64 / 1e9),
            },
            m.layers.to_string(),
            m.hidden.to_string(),
            format!("{}/{}", m.heads, m.kv_heads),
            m.max_context.to_string(),
            m.source.clone(),
        ]);
    }
    t
}

/// Quantization schemes in words.
pub fn quants() -> Table {
    let mut t = new_table();
    t.set_header(vec!["key", "description"]);
    for q in Quant::ALL {
        t.add_row(vec![q.key(), q.describe()]);
    }
    t
}

/// Scenarios: (key, description).
pub fn scenarios(list: &[(String, String)]) -> Table {
    let mut t = new_table();
    t.set_header(vec!["key", "description"]);
    for (k, d) in list {
        t.add_row(vec![k.clone(), d.clone()]);
    }
    t
}
