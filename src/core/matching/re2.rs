//! Alertmanager's regular expressions, for Rust's `regex` crate.
//!
//! Alertmanager 0.25 compiles a matcher's value with Go's `regexp` (RE2 syntax) as
//! `^(?:VALUE)$`. Go and Rust read many patterns differently: `\d`, `\w`, `\s` and
//! `\b` are ASCII in Go and Unicode in Rust; Go takes `\Q...\E`, octal escapes
//! and a `{` that starts no repeat (`a{,3}` is literal), where Rust refuses them;
//! Rust takes `(?x)`, `(?<name>..)`, `\<`, `[a&&b]`, `a**`, `\p{Greek}` (as a
//! script extension) and loose property names, which Go refuses or reads
//! otherwise. This module parses a pattern as Go's parser (`regexp/syntax` with
//! Perl flags, Go 1.19, which Alertmanager 0.25 is built with) does, accepting
//! and refusing the same patterns with Go's error messages, and writes what it
//! means in Rust's syntax with nothing left to interpretation: every flag
//! resolved on the node it applies to, every literal escaped, every class
//! spelled out.

use std::fmt::{self, Write as _};

/// Why Go's parser refuses a pattern, as Go words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoError {
    pub code: &'static str,
    /// The part of the pattern Go quotes (empty for none).
    pub expr: String,
}

impl fmt::Display for GoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.expr.is_empty() {
            f.write_str(self.code)
        } else {
            write!(f, "{}: `{}`", self.code, self.expr)
        }
    }
}

const ERR_INVALID_CHAR_RANGE: &str = "invalid character class range";
const ERR_INVALID_ESCAPE: &str = "invalid escape sequence";
const ERR_INVALID_NAMED_CAPTURE: &str = "invalid named capture";
const ERR_INVALID_PERL_OP: &str = "invalid or unsupported Perl syntax";
const ERR_INVALID_REPEAT_OP: &str = "invalid nested repetition operator";
const ERR_INVALID_REPEAT_SIZE: &str = "invalid repeat count";
const ERR_MISSING_BRACKET: &str = "missing closing ]";
const ERR_MISSING_PAREN: &str = "missing closing )";
const ERR_MISSING_REPEAT_ARGUMENT: &str = "missing argument to repetition operator";
const ERR_TRAILING_BACKSLASH: &str = "trailing backslash at end of expression";
const ERR_UNEXPECTED_PAREN: &str = "unexpected )";
const ERR_NESTING_DEPTH: &str = "expression nests too deeply";
const ERR_TOO_LARGE: &str = "regexp/syntax: internal error";

/// Go's limits: tree height, and compiled size in instructions.
const MAX_HEIGHT: usize = 1000;
const MAX_SIZE: u64 = (128 << 20) / 40;
const MAX_REPEAT: u32 = 1000;
const MAX_RUNE: u32 = 0x10FFFF;

/// Go's `unicode.Categories` (Go 1.19).
const CATEGORIES: &[&str] = &[
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs",
];

/// Go's `unicode.Scripts` (Go 1.19, Unicode 13).
const SCRIPTS: &[&str] = &[
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "Nandinagari",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Ugaritic",
    "Vai",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Zanabazar_Square",
];

type Ranges = &'static [(u32, u32)];

const DIGIT: Ranges = &[(0x30, 0x39)];
/// Go's `\s`: no vertical tab, unlike `[[:space:]]`.
const PERL_SPACE: Ranges = &[(0x9, 0xA), (0xC, 0xD), (0x20, 0x20)];
const WORD: Ranges = &[(0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A)];
const ALL: Ranges = &[(0, MAX_RUNE)];

/// Go's `perlGroup`.
fn perl_group(c: char) -> Option<(Ranges, bool)> {
    Some(match c {
        'd' => (DIGIT, false),
        'D' => (DIGIT, true),
        's' => (PERL_SPACE, false),
        'S' => (PERL_SPACE, true),
        'w' => (WORD, false),
        'W' => (WORD, true),
        _ => return None,
    })
}

/// Go's `posixGroup`, by the name between `[:` and `:]`.
fn posix_group(name: &str) -> Option<(Ranges, bool)> {
    let (name, negated) = match name.strip_prefix('^') {
        Some(n) => (n, true),
        None => (name, false),
    };
    let ranges: Ranges = match name {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5A), (0x61, 0x7A)],
        "alpha" => &[(0x41, 0x5A), (0x61, 0x7A)],
        "ascii" => &[(0x0, 0x7F)],
        "blank" => &[(0x9, 0x9), (0x20, 0x20)],
        "cntrl" => &[(0x0, 0x1F), (0x7F, 0x7F)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7E)],
        "lower" => &[(0x61, 0x7A)],
        "print" => &[(0x20, 0x7E)],
        "punct" => &[(0x21, 0x2F), (0x3A, 0x40), (0x5B, 0x60), (0x7B, 0x7E)],
        "space" => &[(0x9, 0xD), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5A)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return None,
    };
    Some((ranges, negated))
}

#[derive(Clone, Copy, Debug)]
struct Flags {
    fold: bool,
    one_line: bool,
    dot_nl: bool,
    non_greedy: bool,
}

/// Go's `syntax.Perl` flags.
const PERL: Flags = Flags {
    fold: false,
    one_line: true,
    dot_nl: false,
    non_greedy: false,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Set {
    Ranges(Ranges),
    /// A `\p{..}` general category, by Go's name.
    Category(&'static str),
    Script(&'static str),
    /// Go's `C`: Cc, Cf, Co and Cs, without the unassigned code points Rust adds.
    Other,
}

#[derive(Clone, Debug)]
enum Item {
    Range(u32, u32),
    Set { set: Set, negated: bool },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RepeatOp {
    Star,
    Plus,
    Quest,
    Range(u32, Option<u32>),
}

#[derive(Clone, Debug)]
enum Node {
    Empty,
    Literal {
        c: u32,
        fold: bool,
    },
    Class {
        items: Vec<Item>,
        negated: bool,
        fold: bool,
    },
    AnyChar,
    AnyCharNotNl,
    BeginText,
    EndText,
    BeginLine,
    EndLine,
    WordBoundary,
    NoWordBoundary,
    Repeat {
        sub: Box<Node>,
        op: RepeatOp,
        greedy: bool,
    },
    Concat(Vec<Node>),
    Alternate(Vec<Node>),
    Capture(Box<Node>),
}

/// An open group: the flags before it, its finished branches and the one being read.
struct Frame {
    flags: Flags,
    capture: bool,
    branches: Vec<Node>,
    items: Vec<Node>,
}

impl Frame {
    fn new(flags: Flags, capture: bool) -> Self {
        Frame {
            flags,
            capture,
            branches: Vec::new(),
            items: Vec::new(),
        }
    }

    fn finish(mut self) -> Node {
        self.branches.push(concat(std::mem::take(&mut self.items)));
        let node = if self.branches.len() == 1 {
            self.branches.pop().unwrap_or(Node::Empty)
        } else {
            Node::Alternate(self.branches)
        };
        if self.capture {
            Node::Capture(Box::new(node))
        } else {
            node
        }
    }
}

fn concat(mut items: Vec<Node>) -> Node {
    match items.len() {
        0 => Node::Empty,
        1 => items.pop().unwrap_or(Node::Empty),
        _ => Node::Concat(items),
    }
}

fn error(code: &'static str, expr: &str) -> GoError {
    GoError {
        code,
        expr: expr.to_string(),
    }
}

/// `s` without the part `rest` still holds: what Go quotes in an error.
fn before<'a>(s: &'a str, rest: &str) -> &'a str {
    s.get(..s.len() - rest.len()).unwrap_or(s)
}

fn next_char(s: &str) -> Option<(char, &str)> {
    let mut chars = s.chars();
    let c = chars.next()?;
    Some((c, chars.as_str()))
}

struct Parser<'a> {
    whole: &'a str,
    flags: Flags,
    stack: Vec<Frame>,
}

/// Parses `pattern` as Go does and returns the same regular expression in Rust's
/// syntax, or Go's reason to refuse it.
pub fn translate(pattern: &str) -> Result<String, GoError> {
    let tree = parse(pattern)?;
    let mut out = String::with_capacity(pattern.len() * 2);
    emit(&tree, &mut out);
    Ok(out)
}

fn parse(s: &str) -> Result<Node, GoError> {
    let mut p = Parser {
        whole: s,
        flags: PERL,
        stack: vec![Frame::new(PERL, false)],
    };
    let mut t = s;
    let mut last_repeat: Option<&str> = None;
    while let Some(first) = t.chars().next() {
        let mut repeat = None;
        match first {
            '(' => {
                if t.as_bytes().get(1) == Some(&b'?') {
                    t = p.parse_perl_flags(t)?;
                } else {
                    p.stack.push(Frame::new(p.flags, true));
                    t = &t[1..];
                }
            }
            '|' => {
                let frame = p.top();
                let items = std::mem::take(&mut frame.items);
                frame.branches.push(concat(items));
                t = &t[1..];
            }
            ')' => {
                if p.stack.len() < 2 {
                    return Err(error(ERR_UNEXPECTED_PAREN, p.whole));
                }
                let frame = p
                    .stack
                    .pop()
                    .ok_or_else(|| error(ERR_UNEXPECTED_PAREN, s))?;
                p.flags = frame.flags;
                let node = frame.finish();
                p.push(node);
                t = &t[1..];
            }
            '^' => {
                p.push(if p.flags.one_line {
                    Node::BeginText
                } else {
                    Node::BeginLine
                });
                t = &t[1..];
            }
            '$' => {
                p.push(if p.flags.one_line {
                    Node::EndText
                } else {
                    Node::EndLine
                });
                t = &t[1..];
            }
            '.' => {
                p.push(if p.flags.dot_nl {
                    Node::AnyChar
                } else {
                    Node::AnyCharNotNl
                });
                t = &t[1..];
            }
            '[' => t = p.parse_class(t)?,
            '*' | '+' | '?' => {
                let op = match first {
                    '*' => RepeatOp::Star,
                    '+' => RepeatOp::Plus,
                    _ => RepeatOp::Quest,
                };
                let after = p.repeat(op, t, &t[1..], last_repeat)?;
                repeat = Some(t);
                t = after;
            }
            '{' => match parse_repeat(t) {
                None => {
                    p.literal('{' as u32);
                    t = &t[1..];
                }
                Some((min, max, after)) => {
                    let too_big = match (min, max) {
                        (None, _) => true,
                        (Some(min), Max::Unbounded) => min > MAX_REPEAT,
                        (Some(_), Max::TooBig) => true,
                        (Some(min), Max::Of(max)) => {
                            min > MAX_REPEAT || max > MAX_REPEAT || min > max
                        }
                    };
                    if too_big {
                        return Err(error(ERR_INVALID_REPEAT_SIZE, before(t, after)));
                    }
                    let min = min.unwrap_or(0);
                    let max = match max {
                        Max::Of(m) => Some(m),
                        _ => None,
                    };
                    let after = p.repeat(RepeatOp::Range(min, max), t, after, last_repeat)?;
                    repeat = Some(t);
                    t = after;
                }
            },
            '\\' => t = p.parse_backslash(t)?,
            _ => {
                let (c, rest) = next_char(t).ok_or_else(|| error(ERR_MISSING_PAREN, s))?;
                p.literal(c as u32);
                t = rest;
            }
        }
        last_repeat = repeat;
    }
    if p.stack.len() != 1 {
        return Err(error(ERR_MISSING_PAREN, s));
    }
    let root = p
        .stack
        .pop()
        .map(Frame::finish)
        .ok_or_else(|| error(ERR_MISSING_PAREN, s))?;
    if height(&root) > MAX_HEIGHT {
        return Err(error(ERR_NESTING_DEPTH, s));
    }
    if size(&root) > MAX_SIZE {
        return Err(error(ERR_TOO_LARGE, s));
    }
    Ok(root)
}

#[derive(Clone, Copy)]
enum Max {
    Of(u32),
    Unbounded,
    TooBig,
}

/// Go's `parseRepeat`: `{n}`, `{n,}` or `{n,m}`; `None` when `s` is not of that
/// form (the `{` is then a literal). A number too big is `None` inside.
fn parse_repeat(s: &str) -> Option<(Option<u32>, Max, &str)> {
    let s = s.strip_prefix('{')?;
    let (min, s) = parse_int(s)?;
    let (max, s) = if let Some(s) = s.strip_prefix(',') {
        if let Some(rest) = s.strip_prefix('}') {
            return Some((min, Max::Unbounded, rest));
        }
        let (max, s) = parse_int(s)?;
        (max.map_or(Max::TooBig, Max::Of), s)
    } else {
        (min.map_or(Max::TooBig, Max::Of), s)
    };
    let rest = s.strip_prefix('}')?;
    Some((min, max, rest))
}

/// Go's `parseInt`: digits without a leading zero; `Some(None)` when too big.
fn parse_int(s: &str) -> Option<(Option<u32>, &str)> {
    let digits = s.len() - s.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    if digits == 0 || (digits >= 2 && s.starts_with('0')) {
        return None;
    }
    let (number, rest) = s.split_at(digits);
    let mut n: u64 = 0;
    for b in number.bytes() {
        if n >= 100_000_000 {
            return Some((None, rest));
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some((u32::try_from(n).ok(), rest))
}

impl<'a> Parser<'a> {
    fn top(&mut self) -> &mut Frame {
        if self.stack.is_empty() {
            self.stack.push(Frame::new(PERL, false));
        }
        let last = self.stack.len() - 1;
        &mut self.stack[last]
    }

    fn push(&mut self, node: Node) {
        self.top().items.push(node);
    }

    fn literal(&mut self, c: u32) {
        let fold = self.flags.fold;
        self.push(Node::Literal { c, fold });
    }

    /// Go's `repeat`: `before` starts at the operator, `after` follows it.
    fn repeat(
        &mut self,
        op: RepeatOp,
        before_op: &'a str,
        after: &'a str,
        last_repeat: Option<&'a str>,
    ) -> Result<&'a str, GoError> {
        let mut greedy = !self.flags.non_greedy;
        let after = match after.strip_prefix('?') {
            Some(rest) => {
                greedy = !greedy;
                rest
            }
            None => after,
        };
        if let Some(last) = last_repeat {
            return Err(error(ERR_INVALID_REPEAT_OP, before(last, after)));
        }
        let Some(sub) = self.top().items.pop() else {
            return Err(error(ERR_MISSING_REPEAT_ARGUMENT, before(before_op, after)));
        };
        let node = Node::Repeat {
            sub: Box::new(sub),
            op,
            greedy,
        };
        if let RepeatOp::Range(min, max) = op {
            if (min >= 2 || max.is_some_and(|m| m >= 2)) && !repeat_is_valid(&node, MAX_REPEAT) {
                return Err(error(ERR_INVALID_REPEAT_SIZE, before(before_op, after)));
            }
        }
        self.push(node);
        Ok(after)
    }

    /// Go's `parsePerlFlags`: `(?P<name>`, `(?flags)` or `(?flags:`.
    fn parse_perl_flags(&mut self, s: &'a str) -> Result<&'a str, GoError> {
        if s.len() > 4 && s.as_bytes()[2] == b'P' && s.as_bytes()[3] == b'<' {
            let Some(end) = s.find('>') else {
                return Err(error(ERR_INVALID_NAMED_CAPTURE, s));
            };
            let name = &s[4..end];
            let valid =
                !name.is_empty() && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !valid {
                return Err(error(ERR_INVALID_NAMED_CAPTURE, &s[..=end]));
            }
            self.stack.push(Frame::new(self.flags, true));
            return Ok(&s[end + 1..]);
        }
        let mut t = &s[2..];
        let mut flags = self.flags;
        let mut negate = false;
        let mut saw_flag = false;
        while let Some((c, rest)) = next_char(t) {
            t = rest;
            match c {
                'i' => flags.fold = !negate,
                'm' => flags.one_line = negate,
                's' => flags.dot_nl = !negate,
                'U' => flags.non_greedy = !negate,
                '-' if !negate => {
                    negate = true;
                    saw_flag = false;
                    continue;
                }
                ':' | ')' => {
                    if negate && !saw_flag {
                        break;
                    }
                    if c == ':' {
                        self.stack.push(Frame::new(self.flags, false));
                    }
                    self.flags = flags;
                    return Ok(t);
                }
                _ => break,
            }
            saw_flag = true;
        }
        Err(error(ERR_INVALID_PERL_OP, before(s, t)))
    }

    /// A `\` outside a class: an assertion, `\Q...\E`, a class or a literal.
    fn parse_backslash(&mut self, t: &'a str) -> Result<&'a str, GoError> {
        if let Some(c) = t.as_bytes().get(1) {
            let node = match c {
                b'A' => Some(Node::BeginText),
                b'b' => Some(Node::WordBoundary),
                b'B' => Some(Node::NoWordBoundary),
                b'z' => Some(Node::EndText),
                b'C' => return Err(error(ERR_INVALID_ESCAPE, &t[..2])),
                b'Q' => {
                    let (lit, rest) = t[2..].split_once(r"\E").unwrap_or((&t[2..], ""));
                    for c in lit.chars() {
                        self.literal(c as u32);
                    }
                    return Ok(rest);
                }
                _ => None,
            };
            if let Some(node) = node {
                self.push(node);
                return Ok(&t[2..]);
            }
        }
        let fold = self.flags.fold;
        if let Some((item, rest)) = parse_unicode_class(t)? {
            self.push(Node::Class {
                items: vec![item],
                negated: false,
                fold,
            });
            return Ok(rest);
        }
        if let Some((item, rest)) = parse_perl_class(t) {
            self.push(Node::Class {
                items: vec![item],
                negated: false,
                fold,
            });
            return Ok(rest);
        }
        let (c, rest) = parse_escape(t)?;
        self.literal(c);
        Ok(rest)
    }

    /// Go's `parseClass`: `s` starts at the `[`.
    fn parse_class(&mut self, s: &'a str) -> Result<&'a str, GoError> {
        let mut t = &s[1..];
        let negated = match t.strip_prefix('^') {
            Some(rest) => {
                t = rest;
                true
            }
            None => false,
        };
        let mut items = Vec::new();
        let mut first = true;
        while first || !t.starts_with(']') {
            first = false;
            if t.len() > 2 && t.starts_with("[:") {
                if let Some(i) = t[2..].find(":]") {
                    let name = &t[2..2 + i];
                    let Some((ranges, negated)) = posix_group(name) else {
                        return Err(error(ERR_INVALID_CHAR_RANGE, &t[..i + 4]));
                    };
                    items.push(Item::Set {
                        set: Set::Ranges(ranges),
                        negated,
                    });
                    t = &t[i + 4..];
                    continue;
                }
            }
            if let Some((item, rest)) = parse_unicode_class(t)? {
                items.push(item);
                t = rest;
                continue;
            }
            if let Some((item, rest)) = parse_perl_class(t) {
                items.push(item);
                t = rest;
                continue;
            }
            let range_start = t;
            let (lo, rest) = parse_class_char(t, s)?;
            t = rest;
            let mut hi = lo;
            if t.len() >= 2 && t.starts_with('-') && !t[1..].starts_with(']') {
                let (h, rest) = parse_class_char(&t[1..], s)?;
                t = rest;
                hi = h;
                if hi < lo {
                    return Err(error(ERR_INVALID_CHAR_RANGE, before(range_start, t)));
                }
            }
            items.push(Item::Range(lo, hi));
        }
        let fold = self.flags.fold;
        self.push(Node::Class {
            items,
            negated,
            fold,
        });
        Ok(&t[1..])
    }
}

/// Go's `parseClassChar`: one character of a class, maybe escaped.
fn parse_class_char<'a>(s: &'a str, whole_class: &str) -> Result<(u32, &'a str), GoError> {
    if s.starts_with('\\') {
        return parse_escape(s);
    }
    next_char(s)
        .map(|(c, rest)| (c as u32, rest))
        .ok_or_else(|| error(ERR_MISSING_BRACKET, whole_class))
}

/// Go's `parsePerlClassEscape`: `\d`, `\D`, `\s`, `\S`, `\w`, `\W`, ASCII only.
fn parse_perl_class(s: &str) -> Option<(Item, &str)> {
    let rest = s.strip_prefix('\\')?;
    let (c, rest) = next_char(rest)?;
    let (ranges, negated) = perl_group(c)?;
    Some((
        Item::Set {
            set: Set::Ranges(ranges),
            negated,
        },
        rest,
    ))
}

/// Go's `parseUnicodeClass`: `\pL`, `\p{Greek}`, `\P{^Lu}`, with Go's names only.
fn parse_unicode_class(s: &str) -> Result<Option<(Item, &str)>, GoError> {
    let Some(rest) = s.strip_prefix("\\p").or_else(|| s.strip_prefix("\\P")) else {
        return Ok(None);
    };
    let mut negated = s.as_bytes()[1] == b'P';
    let (seq, mut name, rest) = match next_char(rest) {
        Some(('{', _)) => {
            let Some(end) = s.find('}') else {
                return Err(error(ERR_INVALID_CHAR_RANGE, s));
            };
            (&s[..=end], &s[3..end], &s[end + 1..])
        }
        Some((_, after)) => {
            let seq = before(s, after);
            (seq, &seq[2..], after)
        }
        None => (s, "", rest),
    };
    if let Some(n) = name.strip_prefix('^') {
        negated = !negated;
        name = n;
    }
    let set = if name == "Any" {
        Set::Ranges(ALL)
    } else if let Some(c) = CATEGORIES.iter().find(|c| **c == name) {
        if *c == "C" {
            Set::Other
        } else {
            Set::Category(c)
        }
    } else if let Some(script) = SCRIPTS.iter().find(|c| **c == name) {
        Set::Script(script)
    } else {
        return Err(error(ERR_INVALID_CHAR_RANGE, seq));
    };
    Ok(Some((Item::Set { set, negated }, rest)))
}

/// Go's `parseEscape`: one escaped character.
fn parse_escape(s: &str) -> Result<(u32, &str), GoError> {
    let t = &s[1..];
    let Some((c, mut t)) = next_char(t) else {
        return Err(error(ERR_TRAILING_BACKSLASH, ""));
    };
    let invalid = |t: &str| error(ERR_INVALID_ESCAPE, before(s, t));
    match c {
        '1'..='7' if !t.starts_with(|d: char| ('0'..='7').contains(&d)) => Err(invalid(t)),
        '0'..='7' => {
            let mut r = c as u32 - '0' as u32;
            for _ in 1..3 {
                match t.as_bytes().first() {
                    Some(d @ b'0'..=b'7') => {
                        r = r * 8 + u32::from(d - b'0');
                        t = &t[1..];
                    }
                    _ => break,
                }
            }
            Ok((r, t))
        }
        'x' => {
            let Some((c, rest)) = next_char(t) else {
                return Err(invalid(t));
            };
            t = rest;
            if c == '{' {
                let mut r: u32 = 0;
                let mut digits = 0;
                loop {
                    let Some((c, rest)) = next_char(t) else {
                        return Err(invalid(t));
                    };
                    t = rest;
                    if c == '}' {
                        break;
                    }
                    let Some(v) = c.to_digit(16) else {
                        return Err(invalid(t));
                    };
                    r = r * 16 + v;
                    if r > MAX_RUNE {
                        return Err(invalid(t));
                    }
                    digits += 1;
                }
                if digits == 0 {
                    return Err(invalid(t));
                }
                return Ok((r, t));
            }
            let x = c.to_digit(16);
            let Some((c, rest)) = next_char(t) else {
                return Err(invalid(t));
            };
            t = rest;
            match (x, c.to_digit(16)) {
                (Some(x), Some(y)) => Ok((x * 16 + y, t)),
                _ => Err(invalid(t)),
            }
        }
        'a' => Ok((0x7, t)),
        'f' => Ok((0xC, t)),
        'n' => Ok((0xA, t)),
        'r' => Ok((0xD, t)),
        't' => Ok((0x9, t)),
        'v' => Ok((0xB, t)),
        c if c.is_ascii() && !c.is_ascii_alphanumeric() => Ok((c as u32, t)),
        _ => Err(invalid(t)),
    }
}

/// Go's `repeatIsValid`: nested counted repeats multiply to at most `n` copies.
fn repeat_is_valid(node: &Node, mut n: u32) -> bool {
    if let Node::Repeat {
        op: RepeatOp::Range(min, max),
        ..
    } = node
    {
        let m = max.unwrap_or(*min);
        if max == &Some(0) {
            return true;
        }
        if m > n {
            return false;
        }
        if let Some(q) = n.checked_div(m) {
            n = q;
        }
    }
    children(node).iter().all(|sub| repeat_is_valid(sub, n))
}

fn children(node: &Node) -> &[Node] {
    match node {
        Node::Repeat { sub, .. } | Node::Capture(sub) => std::slice::from_ref(sub.as_ref()),
        Node::Concat(subs) | Node::Alternate(subs) => subs,
        _ => &[],
    }
}

/// Go's `calcHeight`.
fn height(node: &Node) -> usize {
    1 + children(node).iter().map(height).max().unwrap_or(0)
}

/// Go's `calcSize`: the compiled program's instructions, pessimistically.
fn size(node: &Node) -> u64 {
    let n = match node {
        Node::Capture(sub) => 2 + size(sub),
        Node::Repeat { sub, op, .. } => {
            let sub = size(sub);
            match op {
                RepeatOp::Star => 2 + sub,
                RepeatOp::Plus | RepeatOp::Quest => 1 + sub,
                RepeatOp::Range(0, None) => 2 + sub,
                RepeatOp::Range(min, None) => 1 + u64::from(*min) * sub,
                RepeatOp::Range(min, Some(max)) => {
                    u64::from(*max) * sub + u64::from(max.saturating_sub(*min))
                }
            }
        }
        Node::Concat(subs) => subs.iter().map(size).sum(),
        Node::Alternate(subs) => subs.iter().map(size).sum::<u64>() + subs.len() as u64 - 1,
        _ => 1,
    };
    n.max(1)
}

// ---------------------------------------------------------------------------
// Rust's syntax

/// A class that matches nothing; Go reaches it with `\p{Cs}` or a surrogate.
const NOTHING: &str = r"[^\x{0}-\x{10FFFF}]";

fn emit(node: &Node, out: &mut String) {
    match node {
        Node::Empty => out.push_str("(?:)"),
        Node::Literal { c, fold } => match char::from_u32(*c) {
            Some(c) if *fold => {
                out.push_str("(?i:");
                emit_char(c, out);
                out.push(')');
            }
            Some(c) => emit_char(c, out),
            // A surrogate: no valid string contains one.
            None => out.push_str(NOTHING),
        },
        Node::Class {
            items,
            negated,
            fold,
        } => {
            if *fold {
                out.push_str("(?i:");
            }
            out.push('[');
            if *negated {
                out.push('^');
            }
            for item in items {
                emit_item(item, out);
            }
            out.push(']');
            if *fold {
                out.push(')');
            }
        }
        Node::AnyChar => out.push_str("(?s:.)"),
        Node::AnyCharNotNl => out.push_str(r"[^\n]"),
        Node::BeginText => out.push_str(r"\A"),
        Node::EndText => out.push_str(r"\z"),
        Node::BeginLine => out.push_str("(?m:^)"),
        Node::EndLine => out.push_str("(?m:$)"),
        Node::WordBoundary => out.push_str(r"(?-u:\b)"),
        Node::NoWordBoundary => out.push_str(r"(?-u:\B)"),
        Node::Repeat { sub, op, greedy } => {
            let wrap = matches!(
                sub.as_ref(),
                Node::Concat(_) | Node::Alternate(_) | Node::Repeat { .. }
            );
            if wrap {
                out.push_str("(?:");
            }
            emit(sub, out);
            if wrap {
                out.push(')');
            }
            let _ = match op {
                RepeatOp::Star => write!(out, "*"),
                RepeatOp::Plus => write!(out, "+"),
                RepeatOp::Quest => write!(out, "?"),
                RepeatOp::Range(min, Some(max)) if min == max => write!(out, "{{{min}}}"),
                RepeatOp::Range(min, Some(max)) => write!(out, "{{{min},{max}}}"),
                RepeatOp::Range(min, None) => write!(out, "{{{min},}}"),
            };
            if !greedy {
                out.push('?');
            }
        }
        Node::Concat(subs) => subs.iter().for_each(|s| emit(s, out)),
        Node::Alternate(subs) => {
            out.push_str("(?:");
            for (i, s) in subs.iter().enumerate() {
                if i > 0 {
                    out.push('|');
                }
                emit(s, out);
            }
            out.push(')');
        }
        Node::Capture(sub) => {
            out.push_str("(?:");
            emit(sub, out);
            out.push(')');
        }
    }
}

fn emit_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:X}}}", c as u32);
    }
}

fn emit_item(item: &Item, out: &mut String) {
    match item {
        Item::Range(lo, hi) => emit_range(*lo, *hi, out),
        Item::Set { set, negated } => match set {
            Set::Ranges(ranges) => {
                if *negated {
                    out.push_str("[^");
                }
                for (lo, hi) in *ranges {
                    emit_range(*lo, *hi, out);
                }
                if *negated {
                    out.push(']');
                }
            }
            Set::Category("Cs") => out.push_str(if *negated {
                r"[\x{0}-\x{10FFFF}]"
            } else {
                NOTHING
            }),
            Set::Category(name) => {
                let _ = write!(out, "\\{}{{gc={name}}}", if *negated { 'P' } else { 'p' });
            }
            Set::Script(name) => {
                let _ = write!(out, "\\{}{{sc={name}}}", if *negated { 'P' } else { 'p' });
            }
            Set::Other => {
                out.push_str(if *negated { "[^" } else { "[" });
                out.push_str(r"\p{gc=Cc}\p{gc=Cf}\p{gc=Co}]");
            }
        },
    }
}

/// A range of code points; the surrogates in it are left out (they are in no string).
fn emit_range(lo: u32, hi: u32, out: &mut String) {
    let mut parts = Vec::with_capacity(2);
    if lo < 0xD800 {
        parts.push((lo, hi.min(0xD7FF)));
    }
    if hi > 0xDFFF {
        parts.push((lo.max(0xE000), hi));
    }
    if parts.is_empty() {
        out.push_str(NOTHING);
    }
    for (lo, hi) in parts {
        class_char(lo, out);
        if lo != hi {
            out.push('-');
            class_char(hi, out);
        }
    }
}

fn class_char(c: u32, out: &mut String) {
    match char::from_u32(c) {
        Some(c) if c.is_ascii_alphanumeric() => out.push(c),
        _ => {
            let _ = write!(out, "\\x{{{c:X}}}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(pattern: &str) -> Result<String, String> {
        translate(pattern).map_err(|e| e.to_string())
    }

    #[test]
    fn refuses_what_go_refuses_with_gos_words() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("(", "missing closing ): `(`"),
            (")", "unexpected ): `)`"),
            ("[a", "missing closing ]: `[a`"),
            ("a**", "invalid nested repetition operator: `**`"),
            ("a*+", "invalid nested repetition operator: `*+`"),
            ("a{2}{3}", "invalid nested repetition operator: `{2}{3}`"),
            ("*", "missing argument to repetition operator: `*`"),
            ("(*)", "missing argument to repetition operator: `*`"),
            ("a|*", "missing argument to repetition operator: `*`"),
            ("a{1001}", "invalid repeat count: `{1001}`"),
            ("a{3,2}", "invalid repeat count: `{3,2}`"),
            ("(a{1000}){1000}", "invalid repeat count: `{1000}`"),
            ("(?:a{20}){51}", "invalid repeat count: `{51}`"),
            (r"\C", "invalid escape sequence: `\\C`"),
            (r"\1", "invalid escape sequence: `\\1`"),
            (r"\8", "invalid escape sequence: `\\8`"),
            (r"\q", "invalid escape sequence: `\\q`"),
            (r"\Z", "invalid escape sequence: `\\Z`"),
            (r"\xZZ", "invalid escape sequence: `\\xZZ`"),
            (r"\x{110000}", "invalid escape sequence: `\\x{110000`"),
            ("a\\", "trailing backslash at end of expression"),
            (r"[\b]", "invalid escape sequence: `\\b`"),
            ("[z-a]", "invalid character class range: `z-a`"),
            ("[[:foo:]]", "invalid character class range: `[:foo:]`"),
            (r"\p{Greekish}", "invalid character class range: `\\p{Greekish}`"),
            (r"\p{greek}", "invalid character class range: `\\p{greek}`"),
            (r"\p{Letter}", "invalid character class range: `\\p{Letter}`"),
            (r"\p{Vithkuqi}", "invalid character class range: `\\p{Vithkuqi}`"),
            (r"\pX", "invalid character class range: `\\pX`"),
            ("(?x)a", "invalid or unsupported Perl syntax: `(?x`"),
            ("(?<n>a)", "invalid or unsupported Perl syntax: `(?<`"),
            ("(?i-)a", "invalid or unsupported Perl syntax: `(?i-)`"),
            ("(?P<n-1>a)", "invalid named capture: `(?P<n-1>`"),
            ("(?P=n)", "invalid or unsupported Perl syntax: `(?P`"),
        ];
        for (pattern, message) in cases {
            assert_eq!(go(pattern), Err(message.to_string()), "{pattern}");
        }
    }

    #[test]
    fn writes_gos_meaning_in_rusts_syntax() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("abc", "abc"),
            (r"\d", r"[0-9]"),
            (r"\D", r"[[^0-9]]"),
            (r"\w", r"[0-9A-Z\x{5F}a-z]"),
            (r"\<\>", r"\x{3C}\x{3E}"),
            (r"\s", r"[\x{9}-\x{A}\x{C}-\x{D}\x{20}]"),
            (r"\b", r"(?-u:\b)"),
            (".", r"[^\n]"),
            ("(?s).", "(?s:.)"),
            ("(?i)k", "(?i:k)"),
            ("(?i:a)b", "(?i:a)b"),
            ("^a$", r"\Aa\z"),
            ("(?m)^$", "(?m:^)(?m:$)"),
            ("a{,3}", r"a\x{7B}\x{2C}3\x{7D}"),
            ("a{01}", r"a\x{7B}01\x{7D}"),
            ("a{2,}?", "a{2,}?"),
            ("(?U)a*", "a*?"),
            (r"\Qa.b\E+", r"a\x{2E}b+"),
            (r"\Qa.b", r"a\x{2E}b"),
            (r"\101\0", r"A\x{0}"),
            (r"\_", r"\x{5F}"),
            ("(?P<x>a)|b", "(?:(?:a)|b)"),
            ("a(?i)*", "a*"),
            ("(?)a", "a"),
            ("[[a]", r"[\x{5B}a]"),
            ("[a&&b]", r"[a\x{26}\x{26}b]"),
            ("[]a]", r"[\x{5D}a]"),
            ("[^-]", r"[^\x{2D}]"),
            (r"\p{Greek}", r"[\p{sc=Greek}]"),
            (r"\P{^Lu}", r"[\p{gc=Lu}]"),
            (r"\pC", r"[[\p{gc=Cc}\p{gc=Cf}\p{gc=Co}]]"),
            (r"\p{Cs}", r"[[^\x{0}-\x{10FFFF}]]"),
            (r"[[:^alpha:]]", r"[[^A-Za-z]]"),
            (r"\x{D800}", r"[^\x{0}-\x{10FFFF}]"),
            ("", "(?:)"),
            ("a|", "(?:a|(?:))"),
        ];
        for (pattern, rust) in cases {
            assert_eq!(go(pattern).as_deref(), Ok(*rust), "{pattern}");
            regex::Regex::new(rust).unwrap_or_else(|e| panic!("{pattern} -> {rust}: {e}"));
        }
    }

    /// Every pattern of up to three characters from Go's syntax: no panic, and what
    /// Go accepts, Rust compiles.
    #[test]
    fn short_patterns_translate_to_what_rust_compiles() {
        let alphabet = [
            "(", ")", "[", "]", "{", "}", "\\", "*", "+", "?", "|", "^", "$", ".", "-", ":", "a",
            "1", ",", "P", "p", "Q", "E", "x", "<", "é",
        ];
        let mut patterns = vec![String::new()];
        for _ in 0..3 {
            patterns = patterns
                .iter()
                .flat_map(|p| alphabet.iter().map(move |c| format!("{p}{c}")))
                .collect();
            for p in &patterns {
                if let Ok(rust) = translate(p) {
                    regex::Regex::new(&rust).unwrap_or_else(|e| panic!("{p} -> {rust}: {e}"));
                }
            }
        }
    }

    #[test]
    fn every_go_script_and_category_compiles_in_rust() {
        for name in SCRIPTS.iter().chain(CATEGORIES) {
            for p in [format!(r"\p{{{name}}}"), format!(r"[^\P{{{name}}}x]")] {
                let rust = translate(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
                regex::Regex::new(&rust).unwrap_or_else(|e| panic!("{p} -> {rust}: {e}"));
            }
        }
    }
}
