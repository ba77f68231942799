//! The little SDP the driver reads itself: media sections and their `m=` lines.

/// The format list of an `m=` line (everything after the protocol).
pub(super) fn format_list(m_line: &str) -> &str {
    let mut fields = m_line.splitn(4, ' ');
    fields.nth(3).unwrap_or_default()
}

/// One media section of a description.
pub(super) struct Section<'a> {
    pub(super) index: u16,
    pub(super) mid: Option<&'a str>,
    pub(super) rejected: bool,
    /// Its lines, `m=` first, line endings trimmed.
    pub(super) lines: Vec<&'a str>,
}

impl Section<'_> {
    /// Its media type: `audio`, `video`, `application`, ...
    pub(super) fn kind(&self) -> &str {
        let m = self.lines[0].strip_prefix("m=").unwrap_or_default();
        m.split_whitespace().next().unwrap_or_default()
    }
}

/// The media sections of a description, in order; lines before the first `m=` (the session
/// part) belong to none.
pub(super) fn media_sections(sdp: &str) -> Vec<Section<'_>> {
    let mut sections: Vec<Section<'_>> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let port = m.split_whitespace().nth(1).unwrap_or_default();
            sections.push(Section {
                index: u16::try_from(sections.len()).unwrap_or(u16::MAX),
                mid: None,
                rejected: port == "0",
                lines: vec![line],
            });
        } else if let Some(s) = sections.last_mut() {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                s.mid = Some(mid);
            }
            s.lines.push(line);
        }
    }
    sections
}
