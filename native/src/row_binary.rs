//! ClickHouse's RowBinary: the pieces both encoders (event log, rated windows) write.

/// A length prefix (unsigned LEB128).
pub fn length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let low = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// A String value: its length and bytes.
pub fn text(out: &mut Vec<u8>, bytes: &[u8]) {
    length(out, bytes.len());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_leb128() {
        let mut out = Vec::new();
        text(&mut out, &[b'x'; 300]);
        assert_eq!(&out[..2], &[0xac, 0x02]);
        assert_eq!(out.len(), 302);
    }
}
