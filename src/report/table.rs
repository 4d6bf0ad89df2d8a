//! Plain aligned text tables for the terminal: no borders, two spaces between
//! columns, numbers right-aligned, no trailing blanks (so output diffs cleanly).

use comfy_table::{presets, CellAlignment, Table};

/// Render `header` and `rows` as aligned columns. Columns whose index is in
/// `right` are right-aligned (numbers).
pub fn render(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(header.iter().copied());
    for row in rows {
        t.add_row(row.iter().map(String::as_str));
    }
    for (i, col) in t.column_iter_mut().enumerate() {
        col.set_padding((0, 2));
        if right.contains(&i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut s = String::new();
    for line in t.lines() {
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_whatever_the_width() {
        let rows = vec![
            vec!["uno".to_string(), "32256".to_string(), "Arduino Uno".to_string()],
            vec!["a-very-long-board-id".to_string(), "7".to_string(), "X".to_string()],
        ];
        let s = render(&["id", "flash", "name"], &rows, &[1]);
        assert_eq!(
            s,
            "id                    flash  name\n\
             uno                   32256  Arduino Uno\n\
             a-very-long-board-id      7  X\n"
        );
    }
}
