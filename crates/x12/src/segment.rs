//! Raw segments and elements, independent of any separators.
//!
//! A [`Segment`] is an id and its elements; an [`Element`] holds one or more repetitions, each of
//! one or more components. Values are kept exactly as read (no trimming), so rendering a parsed
//! segment with the same separators gives back the same text.
//!
//! JSON form: a simple element is a string (`"EA"`), a composite is an array of components
//! (`["EA", "12"]`), a repeated element is an array of arrays (`[["A"], ["B", "1"]]`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One data element: repetitions of components. Never empty: at least one repetition of at
/// least one component (possibly the empty string).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Element(Repr);

/// Most elements are one simple value; they take a single allocation (none when empty).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Repr {
    Simple(String),
    /// At least one repetition, each of at least one component, not just one component.
    Structured(Vec<Vec<String>>),
}

impl Element {
    /// A simple element.
    pub fn simple(value: impl Into<String>) -> Self {
        Self(Repr::Simple(value.into()))
    }

    /// A composite element of the given components (an empty list is one empty component).
    pub fn composite(mut components: Vec<String>) -> Self {
        match components.len() {
            0 => Self::simple(""),
            1 => Self::simple(components.pop().unwrap_or_default()),
            _ => Self(Repr::Structured(vec![components])),
        }
    }

    /// A repeated element (an empty list, or empty repetitions, become one empty component).
    pub fn repeated(mut repeats: Vec<Vec<String>>) -> Self {
        match repeats.len() {
            0 => Self::simple(""),
            1 => Self::composite(repeats.pop().unwrap_or_default()),
            _ => {
                for repeat in &mut repeats {
                    if repeat.is_empty() {
                        repeat.push(String::new());
                    }
                }
                Self(Repr::Structured(repeats))
            }
        }
    }

    /// The first component of the first repetition: the value of a simple element.
    pub fn value(&self) -> &str {
        self.component(1).unwrap_or("")
    }

    /// The 1-based component of the first repetition.
    pub fn component(&self, position: usize) -> Option<&str> {
        self.components()
            .get(position.checked_sub(1)?)
            .map(String::as_str)
    }

    /// The components of the first repetition.
    pub fn components(&self) -> &[String] {
        match &self.0 {
            Repr::Simple(value) => std::slice::from_ref(value),
            Repr::Structured(repeats) => repeats.first().map(Vec::as_slice).unwrap_or(&[]),
        }
    }

    /// All repetitions, each as its components.
    pub fn repeats(&self) -> Vec<&[String]> {
        match &self.0 {
            Repr::Simple(value) => vec![std::slice::from_ref(value)],
            Repr::Structured(repeats) => repeats.iter().map(Vec::as_slice).collect(),
        }
    }

    /// The number of repetitions (1 for an element that does not repeat).
    pub fn repetition_count(&self) -> usize {
        match &self.0 {
            Repr::Simple(_) => 1,
            Repr::Structured(repeats) => repeats.len(),
        }
    }

    /// Every component of every repetition.
    pub fn values(&self) -> impl Iterator<Item = &str> {
        let (simple, structured) = match &self.0 {
            Repr::Simple(value) => (Some(value.as_str()), None),
            Repr::Structured(repeats) => (None, Some(repeats.iter().flatten().map(String::as_str))),
        };
        simple.into_iter().chain(structured.into_iter().flatten())
    }

    /// `true` when every component of every repetition is empty.
    pub fn is_empty(&self) -> bool {
        self.values().all(str::is_empty)
    }

    /// `true` when the element has more than one component or repetition.
    pub fn is_structured(&self) -> bool {
        matches!(self.0, Repr::Structured(_))
    }

    /// Writes the element with the given component and repetition separators.
    pub(crate) fn write(&self, out: &mut String, component: char, repetition: Option<char>) {
        let repeats = match &self.0 {
            Repr::Simple(value) => {
                out.push_str(value);
                return;
            }
            Repr::Structured(repeats) => repeats,
        };
        for (r, repeat) in repeats.iter().enumerate() {
            if r > 0 {
                // Only reachable when the reader split on a repetition separator, or the caller
                // built a repeated element; the renderer checks a separator exists first.
                out.push(repetition.unwrap_or(component));
            }
            for (c, value) in repeat.iter().enumerate() {
                if c > 0 {
                    out.push(component);
                }
                out.push_str(value);
            }
        }
    }

    /// Drops trailing empty components of each repetition (they carry no data).
    pub(crate) fn trimmed(self) -> Self {
        match self.0 {
            Repr::Simple(_) => self,
            Repr::Structured(mut repeats) => {
                for repeat in &mut repeats {
                    while repeat.len() > 1 && repeat.last().is_some_and(String::is_empty) {
                        repeat.pop();
                    }
                }
                Self::repeated(repeats)
            }
        }
    }
}

impl From<&str> for Element {
    fn from(value: &str) -> Self {
        Self::simple(value)
    }
}

impl From<String> for Element {
    fn from(value: String) -> Self {
        Self::simple(value)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ElementRepr {
    Simple(String),
    Composite(Vec<String>),
    Repeated(Vec<Vec<String>>),
}

impl Serialize for Element {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            Repr::Simple(value) => serializer.serialize_str(value),
            Repr::Structured(repeats) => match repeats.as_slice() {
                [only] => only.serialize(serializer),
                all => all.serialize(serializer),
            },
        }
    }
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(match ElementRepr::deserialize(deserializer)? {
            ElementRepr::Simple(value) => Self::simple(value),
            ElementRepr::Composite(components) => Self::composite(components),
            ElementRepr::Repeated(repeats) => Self::repeated(repeats),
        })
    }
}

/// One segment: an id (`BEG`) and its elements (`BEG01` is `elements[0]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Segment {
    /// Segment id, uppercase.
    pub id: String,
    /// Elements in order; trailing empty elements are dropped when rendering.
    pub elements: Vec<Element>,
    /// 1-based position in the file the segment was read from (the first ISA is 1); 0 for a
    /// segment built in code.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub position: usize,
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

impl Segment {
    /// A segment built in code from simple values.
    pub fn new<I, V>(id: &str, values: I) -> Self
    where
        I: IntoIterator<Item = V>,
        V: Into<Element>,
    {
        Self {
            id: id.to_string(),
            elements: values.into_iter().map(Into::into).collect(),
            position: 0,
        }
    }

    /// The 1-based element (`element(1)` is `XX01`).
    pub fn element(&self, position: usize) -> Option<&Element> {
        self.elements.get(position.checked_sub(1)?)
    }

    /// The value of the 1-based element ("" when absent).
    pub fn value(&self, position: usize) -> &str {
        self.element(position).map(Element::value).unwrap_or("")
    }

    /// The value of the 1-based element when present and not blank (trailing spaces trimmed).
    pub fn opt(&self, position: usize) -> Option<String> {
        let value = self.value(position).trim_end();
        (!value.trim_start().is_empty()).then(|| value.to_string())
    }

    /// The 1-based component of the 1-based element, when not blank.
    pub fn opt_component(&self, position: usize, component: usize) -> Option<String> {
        let value = self.element(position)?.component(component)?.trim_end();
        (!value.trim_start().is_empty()).then(|| value.to_string())
    }

    /// `XX01`-style name of an element of this segment.
    pub fn name(&self, position: usize) -> String {
        format!("{}{:02}", self.id, position)
    }
}

/// Builds a segment from optional values, dropping trailing empty elements. Used by the typed
/// renderers: `seg("N1", [Some("ST".into()), name, None, id])`.
pub(crate) fn seg<I>(id: &str, values: I) -> Segment
where
    I: IntoIterator<Item = Option<Element>>,
{
    let mut elements: Vec<Element> = values
        .into_iter()
        .map(|v| {
            v.map(Element::trimmed)
                .unwrap_or_else(|| Element::simple(""))
        })
        .collect();
    while elements.last().is_some_and(Element::is_empty) {
        elements.pop();
    }
    Segment {
        id: id.to_string(),
        elements,
        position: 0,
    }
}
