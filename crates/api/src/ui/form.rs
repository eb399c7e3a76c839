//! A submitted `application/x-www-form-urlencoded` form, field by field; a field may
//! repeat (the checkboxes of a selection).

use bytes::Bytes;

/// The fields of a form, in the order sent.
#[derive(Debug, Clone, Default)]
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// Parses a form body; bytes that are not valid UTF-8 are replaced, never a panic.
    pub(crate) fn parse(body: &Bytes) -> Fields {
        Fields(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_fields_and_escapes() {
        let fields = Fields::parse(&Bytes::from_static(
            b"csrf=a%2Bb&msg=plant-a%2F1&msg=plant-b%2F2&action=retry&bad=%FF",
        ));
        assert_eq!(fields.get("csrf"), Some("a+b"));
        assert_eq!(
            fields.all("msg").collect::<Vec<_>>(),
            ["plant-a/1", "plant-b/2"]
        );
        assert_eq!(fields.get("bad"), Some("\u{FFFD}"));
        assert_eq!(fields.get("missing"), None);
    }
}
