//! `results.csv`: one line per row under a header, for spreadsheets and
//! scripts. Its columns and their order are a contract that readers parse,
//! so the header and the lines come from one list ([`csv_columns`]).

use crate::figure::{Figure, Kind};
use crate::notes::Note;
use crate::stats::Row;

/// One line per row, under a header; a missing figure is an empty field.
/// The columns are the keys of a row of `results.json`, less the
/// repetitions and `ci_level`, with each interval as `_ci_lo` and `_ci_hi`.
pub fn to_csv(rows: &[Row]) -> String {
    let mut s = csv_header();
    s.push('\n');
    for r in rows {
        let values: Vec<String> = csv_columns(r).into_iter().map(|(_, v)| v).collect();
        s.push_str(&values.join(","));
        s.push('\n');
    }
    s
}

/// The CSV header: the names of any row's columns.
pub fn csv_header() -> String {
    let names: Vec<String> = csv_columns(&Row::default())
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    names.join(",")
}

/// A row's CSV columns, name and value, in order. The one place that says
/// what the CSV holds, so the header and the lines cannot drift apart.
fn csv_columns(r: &Row) -> Vec<(String, String)> {
    let real = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let interval = |key: &str, ci: Option<[f64; 2]>| {
        [
            (format!("{key}_ci_lo"), real(ci.map(|c| c[0]))),
            (format!("{key}_ci_hi"), real(ci.map(|c| c[1]))),
        ]
    };
    let mut c: Vec<(String, String)> = vec![
        ("model".into(), csv_field(&r.model)),
        ("connections".into(), r.connections.to_string()),
        ("size".into(), r.size.to_string()),
    ];
    for f in Figure::ALL.into_iter().filter(|f| f.in_block()) {
        let median = r.median(f);
        let value = match f.kind() {
            Kind::Real => real(median),
            Kind::Count => median.map_or(String::new(), |k| (k as u64).to_string()),
        };
        c.push((f.key().into(), value));
    }
    c.extend([
        ("serialized".into(), r.serialized.to_string()),
        ("reps".into(), r.reps.to_string()),
        ("errors".into(), r.errors.to_string()),
        ("mismatches".into(), r.mismatches.to_string()),
        ("clean".into(), r.clean.to_string()),
        (
            "notes".into(),
            csv_field(
                &r.notes
                    .iter()
                    .map(Note::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ),
    ]);
    for f in Figure::KEPT {
        let (key, x) = (f.key(), r.figure(f));
        c.push((format!("{key}_min"), real(x.min)));
        c.push((format!("{key}_max"), real(x.max)));
        c.extend(interval(key, x.ci));
    }
    c.push((
        "baseline".into(),
        csv_field(r.baseline.as_deref().unwrap_or("")),
    ));
    for (f, key) in Figure::RATIOS {
        let x = r.figure(f);
        c.push((key.into(), real(x.ratio)));
        c.extend(interval(key, x.ratio_ci));
    }
    c.extend([
        ("interference_pct".into(), real(r.interference_pct)),
        ("disturbed".into(), r.disturbed.to_string()),
        ("retried".into(), r.retried.to_string()),
        (
            "per_connection".into(),
            r.per_connection.map_or(String::new(), |n| n.to_string()),
        ),
    ]);
    for f in Figure::APPENDED[0] {
        c.push((f.key().into(), real(r.median(*f))));
    }
    c.push(("slow_starts".into(), r.slow_starts.to_string()));
    for f in Figure::APPENDED[1] {
        c.push((f.key().into(), real(r.median(*f))));
    }
    c.extend([
        (
            "switches_lower_bound_reps".into(),
            r.switches_lower_bound_reps.to_string(),
        ),
        (
            "rw_calls_lower_bound_reps".into(),
            r.rw_calls_lower_bound_reps.to_string(),
        ),
    ]);
    c
}

/// Quote a field that holds a comma, quote or line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::fixtures::row;

    #[test]
    fn csv_has_a_header_and_one_line_per_row_with_quoting() {
        let mut a = row("threaded", 1, Some(1000.0));
        a.notes = vec!["said \"hi\", then left".into()];
        let b = row("mine", 64, None);
        let csv = to_csv(&[a, b]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], csv_header());
        let columns = lines[0].split(',').count();
        assert!(lines[1].starts_with("threaded,1,64,1000.000,"));
        assert!(
            lines[1].contains(",\"said \"\"hi\"\", then left\","),
            "{}",
            lines[1]
        );
        assert_eq!(
            lines[1].split(',').count(),
            columns + 1,
            "one comma inside the quoted note: {}",
            lines[1]
        );
        assert_eq!(lines[2].split(',').count(), columns, "{}", lines[2]);
        assert!(
            lines[2].starts_with("mine,64,64,,"),
            "missing figures are empty: {}",
            lines[2]
        );
    }

    /// The columns and keys are a contract: these are the ones readers have
    /// seen so far, in their order; new figures may only add to them.
    #[test]
    fn csv_columns_and_json_keys_keep_their_names_and_order() {
        let old_header = "model,connections,size,msgs_per_sec,mb_per_sec,p50_us,p99_us,\
server_cpu_s_per_million,server_user_s_per_million,server_sys_s_per_million,server_cpus_busy_s_per_million,\
server_peak_rss_kib,client_cpu_pct,host_steal_pct,serialized,reps,errors,mismatches,clean,notes,\
msgs_per_sec_min,msgs_per_sec_max,msgs_per_sec_ci_lo,msgs_per_sec_ci_hi,\
server_cpu_s_per_million_min,server_cpu_s_per_million_max,server_cpu_s_per_million_ci_lo,server_cpu_s_per_million_ci_hi,\
p99_us_min,p99_us_max,p99_us_ci_lo,p99_us_ci_hi,baseline,msgs_per_sec_ratio,msgs_per_sec_ratio_ci_lo,msgs_per_sec_ratio_ci_hi,\
server_cpu_ratio,server_cpu_ratio_ci_lo,server_cpu_ratio_ci_hi,interference_pct,disturbed,retried,\
per_connection,connections_per_sec,server_cpu_us_per_connection,slow_starts";
        assert!(
            csv_header().starts_with(&format!("{old_header},")),
            "new columns only after the old ones: {}",
            csv_header()
        );
        let json = serde_json::to_string_pretty(&row("threaded", 1, Some(1000.0))).unwrap();
        let keys: Vec<&str> = json
            .lines()
            .filter_map(|l| l.strip_prefix("  \"")?.split('"').next())
            .collect();
        let old_keys = "model connections size msgs_per_sec mb_per_sec p50_us p99_us \
server_cpu_s_per_million server_user_s_per_million server_sys_s_per_million \
server_cpus_busy_s_per_million server_peak_rss_kib client_cpu_pct host_steal_pct \
msgs_per_sec_min msgs_per_sec_max msgs_per_sec_ci \
server_cpu_s_per_million_min server_cpu_s_per_million_max server_cpu_s_per_million_ci \
p99_us_min p99_us_max p99_us_ci baseline msgs_per_sec_ratio msgs_per_sec_ratio_ci \
server_cpu_ratio server_cpu_ratio_ci ci_level interference_pct disturbed retried \
msgs_per_sec_reps server_cpu_s_per_million_reps p99_us_reps \
serialized reps errors mismatches clean notes per_connection connections_per_sec \
server_cpu_us_per_connection slow_starts per_connection_rate_min per_connection_rate_median \
per_connection_rate_jain starved_reps";
        let old: Vec<&str> = old_keys.split(' ').collect();
        assert_eq!(
            keys[..old.len()],
            old[..],
            "new keys only after the old ones"
        );
        assert!(
            json.contains("\"server_peak_rss_kib\": 4096,"),
            "a count: {json}"
        );
    }

    #[test]
    fn the_cost_figures_and_their_doubts_come_last_in_both_files() {
        let new = [
            "server_voluntary_switches_per_msg",
            "server_involuntary_switches_per_msg",
            "server_rw_calls_per_msg",
            "switches_lower_bound_reps",
            "rw_calls_lower_bound_reps",
        ];
        assert!(
            csv_header().ends_with(&format!(",slow_starts,{}", new.join(","))),
            "{}",
            csv_header()
        );
        let mut r = row("threaded", 1, Some(1000.0));
        r.figure_mut(Figure::ServerVoluntarySwitches).median = Some(1.5);
        r.switches_lower_bound_reps = 2;
        let json = serde_json::to_string_pretty(&r).unwrap();
        let keys: Vec<&str> = json
            .lines()
            .filter_map(|l| l.strip_prefix("  \"")?.split('"').next())
            .collect();
        assert_eq!(keys[keys.len() - new.len()..], new[..], "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["server_voluntary_switches_per_msg"], 1.5);
        assert_eq!(v["switches_lower_bound_reps"], 2);
        assert!(v["server_rw_calls_per_msg"].is_null());
        let line = to_csv(&[r]);
        assert!(
            line.lines().nth(1).unwrap().ends_with(",1.500,,,2,0"),
            "{line}"
        );
    }
}
