//! Writing a bench's results: every file of the results directory, each
//! made by the module that knows its format (`output` for the JSON, CSV and
//! Markdown, `chart` and `curves` for the SVGs, `report` for the page).

use crate::output::{summary_markdown, to_csv};
use crate::{chart, curves, report, BenchError, Results};
use std::path::{Path, PathBuf};

/// The file names inside the output directory.
pub const FILES: [&str; 7] = [
    "results.json",
    "results.csv",
    "summary.md",
    "chart.svg",
    "latency.svg",
    "sweep.svg",
    "report.html",
];

/// Write every file into `dir` (created if needed); returns their paths.
pub fn write_all(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    std::fs::create_dir_all(dir).map_err(|e| BenchError::Io {
        what: format!("cannot create {}", dir.display()),
        source: e,
    })?;
    let json = serde_json::to_string_pretty(results).expect("results serialize") + "\n";
    let throughput = chart::throughput_svg(results)?;
    let latency = chart::latency_svg(results)?;
    let sweep = curves::sweep_svg(results)?;
    let html = report::html(results, &[&throughput, &latency, &sweep]);
    let contents = [
        json,
        to_csv(&results.results),
        summary_markdown(results),
        throughput,
        latency,
        sweep,
        html,
    ];
    let mut paths = Vec::with_capacity(FILES.len());
    for (name, text) in FILES.iter().zip(contents) {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| BenchError::Io {
            what: format!("cannot write {}", path.display()),
            source: e,
        })?;
        paths.push(path);
    }
    Ok(paths)
}
