//! A small Markdown → Confluence storage format (XHTML) converter.
//!
//! Supported: ATX headings (`#`..`######`), paragraphs, bullet (`-`, `*`,
//! `+`) and numbered (`1.`, `1)`) lists with indented continuation and
//! nesting, fenced code blocks (```` ``` ```` or `~~~`, with a language) as
//! the `code` macro, pipe tables with a header separator row, block quotes,
//! horizontal rules, and inline `code`, **strong**, *emphasis*,
//! ~~strike~~ and `[links](https://...)`.
//!
//! Raw HTML is never passed through: every `<`, `>`, `&` and `"` of the
//! Markdown is escaped, so `<script>` arrives as `&lt;script&gt;`. Link
//! targets other than `http:`, `https:`, `mailto:`, relative paths and
//! `#anchors` (e.g. `javascript:`) are dropped, keeping the link text.

/// Convert Markdown to storage format.
pub fn to_storage(markdown: &str) -> String {
    let text = markdown.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    blocks(&lines)
}

/// Escape text for XHTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// The `code` macro with `code` in a CDATA section; a `]]>` inside is split
/// across two sections so it cannot end the first early.
pub fn code_macro(language: Option<&str>, code: &str) -> String {
    let mut out = String::from("<ac:structured-macro ac:name=\"code\">");
    if let Some(language) = language.filter(|l| !l.is_empty()) {
        out.push_str("<ac:parameter ac:name=\"language\">");
        out.push_str(&escape(language));
        out.push_str("</ac:parameter>");
    }
    out.push_str("<ac:plain-text-body><![CDATA[");
    out.push_str(&code.replace("]]>", "]]]]><![CDATA[>"));
    out.push_str("]]></ac:plain-text-body></ac:structured-macro>");
    out
}

fn indent_of(line: &str) -> usize {
    line.chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// Remove up to `n` columns of leading indentation.
fn dedent(line: &str, n: usize) -> &str {
    let mut cols = 0;
    for (at, c) in line.char_indices() {
        if cols >= n {
            return &line[at..];
        }
        match c {
            ' ' => cols += 1,
            '\t' => cols += 4,
            _ => return &line[at..],
        }
    }
    ""
}

fn heading(t: &str) -> Option<(usize, &str)> {
    let level = t.chars().take_while(|c| *c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.is_empty() && !rest.starts_with(' ') && !rest.starts_with('\t') {
        return None;
    }
    let rest = rest.trim();
    // An optional closing run of `#`.
    let rest = rest.trim_end_matches('#');
    let rest = if rest.ends_with(' ') || rest.is_empty() {
        rest.trim_end()
    } else {
        t[level..].trim()
    };
    Some((level, rest))
}

fn is_rule(t: &str) -> bool {
    let chars: Vec<char> = t.chars().filter(|c| !c.is_whitespace()).collect();
    chars.len() >= 3 && matches!(chars[0], '-' | '*' | '_') && chars.iter().all(|c| *c == chars[0])
}

/// `(ordered, marker width)` when `t` starts a list item.
fn list_marker(t: &str) -> Option<(bool, usize)> {
    let bytes = t.as_bytes();
    if bytes.len() >= 2 && matches!(bytes[0], b'-' | b'*' | b'+') && bytes[1] == b' ' {
        return Some((false, 2));
    }
    if (bytes.len() == 1) && matches!(bytes[0], b'-' | b'*' | b'+') {
        return Some((false, 1));
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=9).contains(&digits)
        && bytes.len() > digits
        && matches!(bytes[digits], b'.' | b')')
        && (bytes.len() == digits + 1 || bytes[digits + 1] == b' ')
    {
        return Some((true, (digits + 2).min(bytes.len())));
    }
    None
}

fn fence(t: &str) -> Option<(char, usize, &str)> {
    let c = t.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = t.chars().take_while(|x| *x == c).count();
    if n < 3 {
        return None;
    }
    let info = t[n..].trim();
    if c == '`' && info.contains('`') {
        return None;
    }
    Some((c, n, info))
}

fn is_table_separator(t: &str) -> bool {
    let t = t.trim();
    t.contains('-')
        && t.contains('|')
        && t.chars().all(|c| matches!(c, '|' | '-' | ':' | ' ' | '\t'))
}

/// Cells of a table row, split at unescaped `|`.
fn cells(row: &str) -> Vec<String> {
    let row = row.trim();
    let row = row.strip_prefix('|').unwrap_or(row);
    let row = if row.ends_with('|') && !row.ends_with("\\|") {
        &row[..row.len() - 1]
    } else {
        row
    };
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = row.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_string()),
            c => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    out
}

fn blocks(lines: &[&str]) -> String {
    let mut out = String::new();
    let mut para: Vec<&str> = Vec::new();
    let flush = |para: &mut Vec<&str>, out: &mut String| {
        if !para.is_empty() {
            out.push_str("<p>");
            out.push_str(&inline(&para.join(" ")));
            out.push_str("</p>");
            para.clear();
        }
    };
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim();
        if t.is_empty() {
            flush(&mut para, &mut out);
            i += 1;
            continue;
        }
        let indent = indent_of(line);
        if let Some((c, n, info)) = fence(t) {
            flush(&mut para, &mut out);
            let language = info.split_whitespace().next();
            let mut code: Vec<&str> = Vec::new();
            i += 1;
            while i < lines.len() {
                let inner = lines[i].trim();
                if let Some((c2, n2, rest)) = fence(inner)
                    && c2 == c
                    && n2 >= n
                    && rest.is_empty()
                {
                    break;
                }
                code.push(dedent(lines[i], indent));
                i += 1;
            }
            i += 1; // the closing fence (or the end)
            out.push_str(&code_macro(language, &code.join("\n")));
            continue;
        }
        if let Some((level, text)) = heading(t) {
            flush(&mut para, &mut out);
            out.push_str(&format!("<h{level}>{}</h{level}>", inline(text)));
            i += 1;
            continue;
        }
        if is_rule(t) {
            flush(&mut para, &mut out);
            out.push_str("<hr />");
            i += 1;
            continue;
        }
        if t.starts_with('|') && i + 1 < lines.len() && is_table_separator(lines[i + 1]) {
            flush(&mut para, &mut out);
            out.push_str("<table><tbody><tr>");
            for cell in cells(t) {
                out.push_str(&format!("<th>{}</th>", inline(&cell)));
            }
            out.push_str("</tr>");
            i += 2;
            while i < lines.len() && lines[i].trim().starts_with('|') {
                out.push_str("<tr>");
                for cell in cells(lines[i]) {
                    out.push_str(&format!("<td>{}</td>", inline(&cell)));
                }
                out.push_str("</tr>");
                i += 1;
            }
            out.push_str("</tbody></table>");
            continue;
        }
        if t.starts_with('>') {
            flush(&mut para, &mut out);
            let mut quoted: Vec<&str> = Vec::new();
            while i < lines.len() && lines[i].trim().starts_with('>') {
                let q = &lines[i].trim()[1..];
                quoted.push(q.strip_prefix(' ').unwrap_or(q));
                i += 1;
            }
            out.push_str("<blockquote>");
            out.push_str(&blocks(&quoted));
            out.push_str("</blockquote>");
            continue;
        }
        if let Some((ordered, _)) = list_marker(t) {
            flush(&mut para, &mut out);
            let tag = if ordered { "ol" } else { "ul" };
            out.push_str(&format!("<{tag}>"));
            let base = indent;
            while i < lines.len() {
                let t = lines[i].trim();
                let Some((o, width)) = list_marker(t) else {
                    break;
                };
                if o != ordered || indent_of(lines[i]) != base {
                    break;
                }
                // The item: its first line, then lines indented past the marker.
                let content_indent = base + width;
                let mut item: Vec<&str> = vec![t[width..].trim_start()];
                i += 1;
                while i < lines.len() {
                    let next = lines[i];
                    if next.trim().is_empty() {
                        // A blank line continues the item only if indented text follows.
                        if i + 1 < lines.len()
                            && !lines[i + 1].trim().is_empty()
                            && indent_of(lines[i + 1]) >= content_indent.max(base + 2)
                        {
                            item.push("");
                            i += 1;
                            continue;
                        }
                        break;
                    }
                    if indent_of(next) >= base + 2 {
                        item.push(dedent(next, content_indent.min(indent_of(next))));
                        i += 1;
                        continue;
                    }
                    // A lazy continuation line of the item's paragraph.
                    let nt = next.trim();
                    if list_marker(nt).is_none()
                        && heading(nt).is_none()
                        && fence(nt).is_none()
                        && !nt.starts_with('>')
                        && !nt.starts_with('|')
                        && !is_rule(nt)
                    {
                        item.push(nt);
                        i += 1;
                        continue;
                    }
                    break;
                }
                let rendered = blocks(&item);
                // A tight item: its first paragraph without `<p>`.
                let rendered = match rendered.strip_prefix("<p>").and_then(|r| {
                    let end = r.find("</p>")?;
                    Some((&r[..end], &r[end + 4..]))
                }) {
                    Some((first, rest)) if !rest.contains("<p>") => format!("{first}{rest}"),
                    _ => rendered,
                };
                out.push_str(&format!("<li>{rendered}</li>"));
                // Skip blank lines between items of the same list.
                let mut j = i;
                while j < lines.len() && lines[j].trim().is_empty() {
                    j += 1;
                }
                if j > i
                    && j < lines.len()
                    && indent_of(lines[j]) == base
                    && list_marker(lines[j].trim()).is_some_and(|(o, _)| o == ordered)
                {
                    i = j;
                }
            }
            out.push_str(&format!("</{tag}>"));
            continue;
        }
        para.push(t);
        i += 1;
    }
    flush(&mut para, &mut out);
    out
}

fn safe_href(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
    {
        return true;
    }
    // Relative references and anchors: no scheme before the first `/`, `?`, `#`.
    let end = lower.find(['/', '?', '#']).unwrap_or(lower.len());
    !lower[..end].contains(':')
}

/// Position of the next `marker` in `chars` at or after `from`.
fn find(chars: &[char], from: usize, marker: &[char]) -> Option<usize> {
    if marker.is_empty() || chars.len() < marker.len() {
        return None;
    }
    (from..=chars.len() - marker.len()).find(|&at| chars[at..at + marker.len()] == *marker)
}

/// Inline Markdown to storage format.
pub fn inline(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() && chars[i + 1].is_ascii_punctuation() => {
                out.push_str(&escape(&chars[i + 1].to_string()));
                i += 2;
            }
            '`' => {
                let n = chars[i..].iter().take_while(|x| **x == '`').count();
                let marker = vec!['`'; n];
                let mut search = i + n;
                let mut close = None;
                while let Some(at) = find(&chars, search, &marker) {
                    let run = chars[at..].iter().take_while(|x| **x == '`').count();
                    if run == n {
                        close = Some(at);
                        break;
                    }
                    search = at + run;
                }
                match close {
                    Some(at) => {
                        let code: String = chars[i + n..at].iter().collect();
                        let code =
                            if code.len() >= 2 && code.starts_with(' ') && code.ends_with(' ') {
                                &code[1..code.len() - 1]
                            } else {
                                code.as_str()
                            };
                        out.push_str("<code>");
                        out.push_str(&escape(code));
                        out.push_str("</code>");
                        i = at + n;
                    }
                    None => {
                        out.push_str(&"`".repeat(n));
                        i += n;
                    }
                }
            }
            '[' => {
                if let Some((label_end, url_end)) = link_at(&chars, i) {
                    let label: String = chars[i + 1..label_end].iter().collect();
                    let target: String = chars[label_end + 2..url_end].iter().collect();
                    let target = target.trim();
                    let url = target.split_whitespace().next().unwrap_or("");
                    let url = url
                        .strip_prefix('<')
                        .and_then(|u| u.strip_suffix('>'))
                        .unwrap_or(url);
                    if !url.is_empty() && safe_href(url) {
                        out.push_str(&format!(
                            "<a href=\"{}\">{}</a>",
                            escape(url),
                            inline(&label)
                        ));
                    } else {
                        out.push_str(&inline(&label));
                    }
                    i = url_end + 1;
                } else {
                    out.push('[');
                    i += 1;
                }
            }
            '*' | '_' | '~' => {
                let double = i + 1 < chars.len() && chars[i + 1] == c;
                let word_before = i > 0 && chars[i - 1].is_alphanumeric();
                let opens = !(c == '_' && word_before);
                let (tag, marker) = match (c, double) {
                    ('~', true) => ("del", vec!['~', '~']),
                    ('~', false) => ("", vec![]),
                    (_, true) => ("strong", vec![c, c]),
                    (_, false) => ("em", vec![c]),
                };
                let start = i + marker.len();
                let close = if opens
                    && !tag.is_empty()
                    && start < chars.len()
                    && !chars[start].is_whitespace()
                {
                    let mut search = start;
                    let mut close = None;
                    while let Some(at) = find(&chars, search, &marker) {
                        let after_ok = c != '_'
                            || at + marker.len() >= chars.len()
                            || !chars[at + marker.len()].is_alphanumeric();
                        // A single marker must not be half of a double one.
                        let single_ok = marker.len() == 2
                            || at + 1 >= chars.len()
                            || chars[at + 1] != c
                            || (at > start && chars[at - 1] == c);
                        if at > start && !chars[at - 1].is_whitespace() && after_ok && single_ok {
                            close = Some(at);
                            break;
                        }
                        search = at + 1;
                    }
                    close
                } else {
                    None
                };
                match close {
                    Some(at) => {
                        let inner: String = chars[start..at].iter().collect();
                        out.push_str(&format!("<{tag}>{}</{tag}>", inline(&inner)));
                        i = at + marker.len();
                    }
                    None => {
                        out.push(c);
                        i += 1;
                    }
                }
            }
            c => {
                out.push_str(&escape(&c.to_string()));
                i += 1;
            }
        }
    }
    out
}

/// `[label](target)` starting at `at`: the index of `]` and of `)`.
fn link_at(chars: &[char], at: usize) -> Option<(usize, usize)> {
    let mut depth = 0;
    let mut label_end = None;
    let mut k = at;
    while k < chars.len() {
        match chars[k] {
            '\\' => k += 1,
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                if depth == 0 {
                    label_end = Some(k);
                    break;
                }
            }
            _ => {}
        }
        k += 1;
    }
    let label_end = label_end?;
    if chars.get(label_end + 1) != Some(&'(') {
        return None;
    }
    let mut depth = 0;
    for (k, c) in chars.iter().enumerate().skip(label_end + 1) {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some((label_end, k));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headings_and_paragraphs() {
        assert_eq!(
            to_storage("# Title\n\nFirst line\nsecond line.\n\n### Sub ###\nText"),
            "<h1>Title</h1><p>First line second line.</p><h3>Sub</h3><p>Text</p>"
        );
        assert_eq!(to_storage("#hashtag"), "<p>#hashtag</p>");
        assert_eq!(to_storage("####### seven"), "<p>####### seven</p>");
    }

    #[test]
    fn escapes_raw_html() {
        assert_eq!(
            to_storage("<script>alert(\"x\")</script> & more"),
            "<p>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more</p>"
        );
        assert_eq!(
            to_storage("# <b>bold</b>"),
            "<h1>&lt;b&gt;bold&lt;/b&gt;</h1>"
        );
        assert_eq!(
            inline("`<img src=x onerror=alert(1)>`"),
            "<code>&lt;img src=x onerror=alert(1)&gt;</code>"
        );
    }

    #[test]
    fn inline_markup() {
        assert_eq!(
            inline("**bold** and *em* and _em2_ and __b2__ and ~~gone~~"),
            "<strong>bold</strong> and <em>em</em> and <em>em2</em> and <strong>b2</strong> \
             and <del>gone</del>"
        );
        assert_eq!(inline("snake_case_name"), "snake_case_name");
        assert_eq!(inline("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(inline("**unclosed"), "**unclosed");
        assert_eq!(inline("\\*not em\\*"), "*not em*");
        assert_eq!(inline("`a` b ``c`d``"), "<code>a</code> b <code>c`d</code>");
    }

    #[test]
    fn links() {
        assert_eq!(
            inline("see [the *docs*](https://example.com/a?b=1&c=\"2\")"),
            "see <a href=\"https://example.com/a?b=1&amp;c=&quot;2&quot;\">the <em>docs</em></a>"
        );
        assert_eq!(inline("[click](javascript:alert(1))"), "click");
        assert_eq!(
            inline("[rel](/wiki/spaces/ENG) [a](#top)"),
            "<a href=\"/wiki/spaces/ENG\">rel</a> <a href=\"#top\">a</a>"
        );
        assert_eq!(inline("[not a link] (x)"), "[not a link] (x)");
    }

    #[test]
    fn lists() {
        assert_eq!(
            to_storage("- one\n- two **b**\n* three"),
            "<ul><li>one</li><li>two <strong>b</strong></li></ul><ul><li>three</li></ul>"
                .replace("</ul><ul>", "")
        );
        assert_eq!(
            to_storage("1. first\n2. second\n   continued\n10) tenth"),
            "<ol><li>first</li><li>second continued</li><li>tenth</li></ol>"
        );
        assert_eq!(
            to_storage("- a\n  - a1\n  - a2\n- b\n\nafter"),
            "<ul><li>a<ul><li>a1</li><li>a2</li></ul></li><li>b</li></ul><p>after</p>"
        );
        assert_eq!(to_storage("- a\n\n- b"), "<ul><li>a</li><li>b</li></ul>");
        assert_eq!(
            to_storage("1. x\n- y"),
            "<ol><li>x</li></ol><ul><li>y</li></ul>"
        );
    }

    #[test]
    fn code_blocks() {
        assert_eq!(
            to_storage("```rust\nfn main() {\n    println!(\"<hi>\");\n}\n```"),
            "<ac:structured-macro ac:name=\"code\"><ac:parameter ac:name=\"language\">rust\
             </ac:parameter><ac:plain-text-body><![CDATA[fn main() {\n    println!(\"<hi>\");\n}\
             ]]></ac:plain-text-body></ac:structured-macro>"
        );
        assert_eq!(
            to_storage("~~~\nx ]]> y\n~~~\ntext"),
            "<ac:structured-macro ac:name=\"code\"><ac:plain-text-body><![CDATA[x ]]]]>\
             <![CDATA[> y]]></ac:plain-text-body></ac:structured-macro><p>text</p>"
        );
        // Unclosed fence runs to the end; Markdown inside stays literal.
        assert_eq!(
            to_storage("```\n# not a heading"),
            "<ac:structured-macro ac:name=\"code\"><ac:plain-text-body><![CDATA[# not a heading\
             ]]></ac:plain-text-body></ac:structured-macro>"
        );
    }

    #[test]
    fn cdata_split_never_leaves_an_early_end() {
        let rendered = code_macro(None, "a]]>b]]>]]>c");
        let body = rendered
            .strip_prefix("<ac:structured-macro ac:name=\"code\"><ac:plain-text-body>")
            .unwrap()
            .strip_suffix("</ac:plain-text-body></ac:structured-macro>")
            .unwrap();
        // Reassemble the CDATA sections: the original text comes back.
        let mut text = String::new();
        let mut rest = body;
        while let Some(start) = rest.strip_prefix("<![CDATA[") {
            let end = start.find("]]>").unwrap();
            text.push_str(&start[..end]);
            rest = &start[end + 3..];
        }
        assert_eq!(rest, "");
        assert_eq!(text, "a]]>b]]>]]>c");
    }

    #[test]
    fn tables() {
        assert_eq!(
            to_storage("| Name | Note |\n|---|:---:|\n| `a` | x \\| y |\n| <b> | |\n\nafter"),
            "<table><tbody><tr><th>Name</th><th>Note</th></tr><tr><td><code>a</code></td>\
             <td>x | y</td></tr><tr><td>&lt;b&gt;</td><td></td></tr></tbody></table><p>after</p>"
        );
    }

    #[test]
    fn quotes_and_rules() {
        assert_eq!(
            to_storage("> quoted **text**\n> more\n\n---\n***"),
            "<blockquote><p>quoted <strong>text</strong> more</p></blockquote><hr /><hr />"
        );
    }

    #[test]
    fn handles_crlf_and_unicode() {
        assert_eq!(
            to_storage("# Über\r\n\r\nnaïve 日本 🔥\r\n"),
            "<h1>Über</h1><p>naïve 日本 🔥</p>"
        );
        assert_eq!(to_storage(""), "");
    }
}
