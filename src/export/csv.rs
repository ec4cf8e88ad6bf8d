//! The end of a CSV file that a crash or a full disk cut: [`cut_to_whole_lines`] takes back
//! its last line when it is not whole (for `recover`). The CSV exporter itself,
//! `export.csv`, is `crate::analysis::csv`.

/// Cuts the CSV file at `path` back to its last whole line (a line cut by a crash or a full
/// disk, whose last number may still read as a number); returns the bytes cut. Reads only
/// the file's tail, back to its last newline. A file without any newline is left alone.
pub fn cut_to_whole_lines(path: &std::path::Path) -> std::io::Result<u64> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(std::io::SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            let whole = start + i as u64 + 1;
            if whole < len {
                file.set_len(whole)?;
                file.sync_all()?;
            }
            return Ok(len - whole);
        }
        end = start;
    }
    Ok(0)
}
