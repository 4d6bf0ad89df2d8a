//! Human views of the commands that do not build: `fbuild boards` and
//! `fbuild cache stats` (their `--json` forms serialize the same data).

use crate::arduino::platform::BoardInfo;
use crate::cache::store::DiskStats;

use super::table;

/// `fbuild boards`: one aligned row per board; `memory` is the class `// @filter` sees.
pub fn boards_table(boards: &[BoardInfo]) -> String {
    let n = |v: Option<u64>| v.map(|x| x.to_string()).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = boards
        .iter()
        .map(|b| vec![b.id.clone(), b.fqbn.clone(), b.mcu.clone(), n(b.max_flash), n(b.max_ram), b.memory.to_string(), b.name.clone()])
        .collect();
    table::render(&["id", "fqbn", "mcu", "flash", "ram", "memory", "name"], &rows, &[3, 4])
}

/// Bytes for people: `12.3 MiB`.
pub fn human_bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

/// `fbuild cache stats`: where, how big, then hits and misses per kind of entry
/// (object, link, archive, ...) for the last run and since the cache was made.
pub fn cache_stats_table(s: &DiskStats) -> String {
    let mut out = format!(
        "cache    {}\nentries  {} ({} records), {} of {}\n\n",
        s.root.display(),
        s.entries,
        s.records,
        human_bytes(s.bytes),
        human_bytes(s.max_bytes)
    );
    let mut kinds: Vec<&String> = s.last_run.namespaces.keys().chain(s.total.namespaces.keys()).collect();
    kinds.sort();
    kinds.dedup();
    let mut rows: Vec<Vec<String>> = kinds
        .iter()
        .map(|k| {
            let (l, t) = (s.last_run.ns(k), s.total.ns(k));
            vec![k.to_string(), l.hits.to_string(), l.misses.to_string(), t.hits.to_string(), t.misses.to_string()]
        })
        .collect();
    rows.push(vec![
        "all".into(),
        s.last_run.hits().to_string(),
        s.last_run.misses().to_string(),
        s.total.hits().to_string(),
        s.total.misses().to_string(),
    ]);
    out.push_str(&table::render(&["kind", "last-run hits", "last-run misses", "total hits", "total misses"], &rows, &[1, 2, 3, 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::store::{NsStats, Stats};

    #[test]
    fn cache_table_has_a_row_per_kind_and_a_total() {
        let mut last = Stats::default();
        last.namespaces.insert("obj".into(), NsStats { hits: 3, misses: 1, stores: 1 });
        let mut total = last.clone();
        total.namespaces.insert("link".into(), NsStats { hits: 10, misses: 2, stores: 2 });
        let s = DiskStats { root: "/c".into(), entries: 5, records: 2, bytes: 3 << 20, max_bytes: 5 << 30, last_run: last, total };
        let t = cache_stats_table(&s);
        assert!(t.starts_with("cache    /c\nentries  5 (2 records), 3.0 MiB of 5.0 GiB\n"), "{t}");
        let row = |k: &str| t.lines().find(|l| l.starts_with(k)).map(|l| l.split_whitespace().collect::<Vec<_>>()).unwrap();
        assert_eq!(row("link"), ["link", "0", "0", "10", "2"]);
        assert_eq!(row("obj"), ["obj", "3", "1", "3", "1"]);
        assert_eq!(row("all"), ["all", "3", "1", "13", "3"]);
    }
}
