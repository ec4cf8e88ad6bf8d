//! The end of a CSV file that a crash or a full disk cut: [`cut_to_whole_lines`] takes back
//! its last line when it is not whole, and [`cut_to_whole_events`] the rows of an event cut
//! short (for `recover`). The CSV exporter itself,
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

/// The events whole in the CSV file at `path`, of `rows_per_event` lines an event after a
/// header line, and the rows of a last event cut short, which are cut from the file (for
/// `recover`, after [`cut_to_whole_lines`]). Reads the whole file.
pub fn cut_to_whole_events(
    path: &std::path::Path,
    rows_per_event: u64,
) -> std::io::Result<(u64, u64)> {
    use std::io::Read as _;
    let rows_per_event = rows_per_event.max(1);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)?;
    let mut chunk = vec![0u8; 1 << 16];
    // Lines ended so far (the header's included) and where the last whole event ends.
    let (mut lines, mut offset, mut whole_end) = (0u64, 0u64, 0u64);
    loop {
        let n = file.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        for (i, _) in chunk[..n].iter().enumerate().filter(|(_, &b)| b == b'\n') {
            lines += 1;
            if lines == 1 || (lines - 1) % rows_per_event == 0 {
                whole_end = offset + i as u64 + 1;
            }
        }
        offset += n as u64;
    }
    let rows = lines.saturating_sub(1);
    let cut = rows % rows_per_event;
    if cut > 0 {
        file.set_len(whole_end)?;
        file.sync_all()?;
    }
    Ok((rows / rows_per_event, cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Events of three rows: the rows of a last event cut short go, whole events stay, and
    /// a file of its header alone holds none.
    #[test]
    fn the_rows_of_an_event_cut_short_are_cut() {
        let dir = crate::fsio::test_dir("csv-events");
        let path = dir.join("f.csv");
        let whole = "counter,x\n0,1\n0,2\n0,3\n1,4\n1,5\n1,6\n";
        std::fs::write(&path, format!("{whole}2,7\n2,8\n")).unwrap();
        assert_eq!(cut_to_whole_events(&path, 3).unwrap(), (2, 2));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        assert_eq!(cut_to_whole_events(&path, 3).unwrap(), (2, 0));
        assert_eq!(cut_to_whole_events(&path, 1).unwrap(), (6, 0));
        std::fs::write(&path, "counter,x\n").unwrap();
        assert_eq!(cut_to_whole_events(&path, 3).unwrap(), (0, 0));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "counter,x\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
