//! Slurm hostlist expressions: `node[01-03,7],gpu5` → `node01 node02 node03
//! node07 gpu5`.
//!
//! Grammar (what Slurm writes into `SLURM_JOB_NODELIST`): a comma-separated
//! list of items, commas inside brackets do not separate items; an item is
//! text with zero or more bracket groups (`rack[1-2]-n[01-02]` is the
//! product, in order: `rack1-n01 rack1-n02 rack2-n01 rack2-n02`); a group is
//! a comma-separated list of numbers and `lo-hi` ranges. A range is padded
//! with zeros to the width of its lower bound as written (`[08-10]` →
//! `08 09 10`, `[1-10]` → `1 … 10`, `[01-03,7]` → `01 02 03 7`), as Slurm
//! does (`launch/tests/hostlist_scontrol.rs` compares with `scontrol show
//! hostnames` where Slurm is installed). Text after a bracket group
//! (`n[1-2].ib`) is accepted, which Slurm 22.05 rejects.

use std::fmt;

/// The most hosts one expression may expand to; a guard against typos such
/// as `n[0-999999999]`.
pub const MAX_HOSTS: usize = 1 << 20;

/// Why a hostlist expression could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostlistError {
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for HostlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for HostlistError {}

fn err(reason: impl Into<String>) -> HostlistError {
    HostlistError {
        reason: reason.into(),
    }
}

/// Expands a hostlist expression into host names, in order (duplicates are
/// kept, as Slurm keeps them). An empty expression is an error.
pub fn expand(expr: &str) -> Result<Vec<String>, HostlistError> {
    let expr = expr.trim();
    if expr.is_empty() {
        return Err(err("empty host list"));
    }
    let mut hosts = Vec::new();
    for item in split_top_level(expr)? {
        if item.is_empty() {
            return Err(err(format!("empty host name in `{expr}`")));
        }
        expand_item(item, &mut hosts)?;
    }
    Ok(hosts)
}

/// The first host of a hostlist expression.
pub fn first(expr: &str) -> Result<String, HostlistError> {
    // Expanding is cheap for any list Slurm writes; keeping one code path
    // keeps `first` and `expand` consistent.
    expand(expr)?
        .into_iter()
        .next()
        .ok_or_else(|| err("empty host list"))
}

/// Splits at commas outside brackets; checks that brackets balance.
fn split_top_level(expr: &str) -> Result<Vec<&str>, HostlistError> {
    let mut items = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in expr.char_indices() {
        match c {
            '[' => {
                if depth > 0 {
                    return Err(err(format!("nested `[` in `{expr}`")));
                }
                depth += 1;
            }
            ']' => {
                if depth == 0 {
                    return Err(err(format!("`]` without `[` in `{expr}`")));
                }
                depth -= 1;
            }
            ',' if depth == 0 => {
                items.push(expr[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(err(format!("unclosed `[` in `{expr}`")));
    }
    items.push(expr[start..].trim());
    Ok(items)
}

/// One item: literal text and bracket groups; appends the product to `out`.
fn expand_item(item: &str, out: &mut Vec<String>) -> Result<(), HostlistError> {
    // Parts: each is the list of alternatives at that position.
    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut rest = item;
    while let Some(open) = rest.find('[') {
        if open > 0 {
            parts.push(vec![rest[..open].to_string()]);
        }
        let close = rest[open..]
            .find(']')
            .map(|c| open + c)
            .ok_or_else(|| err(format!("unclosed `[` in `{item}`")))?;
        parts.push(expand_group(&rest[open + 1..close], item)?);
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(vec![rest.to_string()]);
    }
    let total = parts
        .iter()
        .try_fold(1usize, |n, p| n.checked_mul(p.len()))
        .filter(|n| out.len().saturating_add(*n) <= MAX_HOSTS)
        .ok_or_else(|| err(format!("`{item}` expands to more than {MAX_HOSTS} hosts")))?;
    out.reserve(total);
    let mut acc = vec![String::new()];
    for part in &parts {
        let mut next = Vec::with_capacity(acc.len() * part.len());
        for prefix in &acc {
            for alt in part {
                next.push(format!("{prefix}{alt}"));
            }
        }
        acc = next;
    }
    out.extend(acc);
    Ok(())
}

/// The inside of one bracket group: `01-03,7`.
fn expand_group(group: &str, item: &str) -> Result<Vec<String>, HostlistError> {
    let mut out = Vec::new();
    for piece in group.split(',') {
        let piece = piece.trim();
        if piece.is_empty() {
            return Err(err(format!("empty range in `{item}`")));
        }
        let (lo_s, hi_s) = match piece.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (piece, piece),
        };
        let num = |s: &str| -> Result<u64, HostlistError> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(err(format!(
                    "`{piece}` in `{item}` is not a number or range"
                )));
            }
            s.parse()
                .map_err(|_| err(format!("`{piece}` in `{item}` is too large")))
        };
        let (lo, hi) = (num(lo_s)?, num(hi_s)?);
        if lo > hi {
            return Err(err(format!("range `{piece}` in `{item}` runs backwards")));
        }
        if (hi - lo) as usize >= MAX_HOSTS || out.len() + (hi - lo) as usize >= MAX_HOSTS {
            return Err(err(format!(
                "`{item}` expands to more than {MAX_HOSTS} hosts"
            )));
        }
        let width = lo_s.len();
        for n in lo..=hi {
            out.push(format!("{n:0width$}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(s: &str) -> Vec<String> {
        expand(s).unwrap()
    }

    #[test]
    fn plain_names() {
        assert_eq!(ex("vm"), ["vm"]);
        assert_eq!(ex("a,b,c"), ["a", "b", "c"]);
        assert_eq!(ex(" a , b "), ["a", "b"]);
        assert_eq!(ex("a.example.org"), ["a.example.org"]);
    }

    #[test]
    fn ranges_and_singles_with_padding() {
        assert_eq!(
            ex("node[01-03,7],gpu5"),
            ["node01", "node02", "node03", "node7", "gpu5"]
        );
        // Each range is padded to its own lower bound's width (as Slurm's
        // `scontrol show hostnames` does).
        assert_eq!(ex("n[1,01]"), ["n1", "n01"]);
        assert_eq!(ex("n[07,10-11]"), ["n07", "n10", "n11"]);
        assert_eq!(ex("n[8-11]"), ["n8", "n9", "n10", "n11"]);
        assert_eq!(ex("n[08-11]"), ["n08", "n09", "n10", "n11"]);
        assert_eq!(ex("n[098-101]"), ["n098", "n099", "n100", "n101"]);
        assert_eq!(ex("n[5]"), ["n5"]);
        assert_eq!(ex("n[007]"), ["n007"]);
    }

    #[test]
    fn several_groups_and_suffixes() {
        assert_eq!(
            ex("rack[1-2]-n[01-02]"),
            ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]
        );
        assert_eq!(ex("n[1-2].ib"), ["n1.ib", "n2.ib"]);
        assert_eq!(ex("[1-2]x"), ["1x", "2x"]);
        assert_eq!(ex("a[1,3],b[2-3]c,d"), ["a1", "a3", "b2c", "b3c", "d"]);
    }

    #[test]
    fn first_host() {
        assert_eq!(first("node[01-03,7],gpu5").unwrap(), "node01");
        assert_eq!(first("gpu5,node[01-03]").unwrap(), "gpu5");
    }

    #[test]
    fn malformed_lists_are_errors() {
        for bad in [
            "",
            "n[1-2",
            "n1-2]",
            "n[[1]]",
            "n[]",
            "n[2-1]",
            "n[a-b]",
            "n[1,]",
            "a,,b",
            "n[1-]",
            "n[0-99999999999]",
        ] {
            assert!(expand(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
