//! Recursive-descent parser for the type grammar.

use super::{Field, Type};

/// Deepest nesting of `List<…>` / `Object{…}` a type may have; keeps parsing (and the
/// validation that follows it) far from the stack limit whatever the input.
const MAX_DEPTH: usize = 32;

/// Why a type string could not be parsed, and where (1-based character column).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid type at column {column}: {message}")]
pub struct TypeParseError {
    /// 1-based column (in characters) of the problem within the type string.
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

pub(super) fn parse(text: &str) -> Result<Type, TypeParseError> {
    let mut parser = Parser {
        chars: text.char_indices().collect(),
        pos: 0,
    };
    parser.skip_ws();
    if parser.at_end() {
        return Err(parser.error(
            "empty type; expected one of Boolean, Integer, Float, String, DateTime, List, Object",
        ));
    }
    let ty = parser.parse_type(0)?;
    parser.skip_ws();
    if !parser.at_end() {
        return Err(parser.error(format!(
            "unexpected `{}` after the end of the type",
            parser.rest()
        )));
    }
    Ok(ty)
}

struct Parser {
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Parser {
    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn rest(&self) -> String {
        self.chars[self.pos.min(self.chars.len())..]
            .iter()
            .map(|&(_, c)| c)
            .take(20)
            .collect()
    }

    fn error(&self, message: impl Into<String>) -> TypeParseError {
        TypeParseError {
            column: self.pos + 1,
            message: message.into(),
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, expected: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(expected) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> String {
        self.skip_ws();
        let mut out = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                out.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        out
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            Some(c) => format!("`{c}`"),
            None => "the end of the type".to_string(),
        }
    }

    fn parse_type(&mut self, depth: usize) -> Result<Type, TypeParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("type nested deeper than {MAX_DEPTH} levels")));
        }
        self.skip_ws();
        let start = self.pos;
        let name = self.ident();
        let ty = match name.as_str() {
            "Boolean" => Type::Boolean,
            "Integer" => Type::Integer,
            "Float" => Type::Float,
            "String" => Type::String,
            "DateTime" => Type::DateTime,
            "List" => {
                if self.eat('<') {
                    let inner = self.parse_type(depth + 1)?;
                    if !self.eat('>') {
                        return Err(self.error(format!(
                            "expected `>` to close `List<`, found {}",
                            self.describe_next()
                        )));
                    }
                    Type::List(Some(Box::new(inner)))
                } else {
                    Type::List(None)
                }
            }
            "Object" => {
                if self.eat('{') {
                    Type::Object(Some(self.parse_fields(depth)?))
                } else {
                    Type::Object(None)
                }
            }
            "" => {
                return Err(self.error(format!(
                    "expected a type name (Boolean, Integer, Float, String, DateTime, List or Object), found {}",
                    self.describe_next()
                )));
            }
            other => {
                self.pos = start;
                self.skip_ws();
                return Err(self.error(format!(
                    "unknown type `{other}`; expected one of Boolean, Integer, Float, String, DateTime, List, Object"
                )));
            }
        };
        Ok(ty)
    }

    fn parse_fields(&mut self, depth: usize) -> Result<Vec<Field>, TypeParseError> {
        let mut fields: Vec<Field> = Vec::new();
        loop {
            if self.eat('}') {
                return Ok(fields);
            }
            self.skip_ws();
            let name_at = self.pos;
            let name = self.ident();
            if name.is_empty() {
                return Err(self.error(format!(
                    "expected a field name or `}}`, found {}",
                    self.describe_next()
                )));
            }
            if fields.iter().any(|f| f.name == name) {
                self.pos = name_at;
                return Err(self.error(format!("field `{name}` is declared twice")));
            }
            let optional = self.eat('?');
            if !self.eat(':') {
                return Err(self.error(format!(
                    "expected `:` after field `{name}`, found {}",
                    self.describe_next()
                )));
            }
            let ty = self.parse_type(depth + 1)?;
            fields.push(Field { name, ty, optional });
            if self.eat(',') {
                continue;
            }
            if self.eat('}') {
                return Ok(fields);
            }
            return Err(self.error(format!(
                "expected `,` or `}}` in Object, found {}",
                self.describe_next()
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        for text in [
            "Boolean",
            "Integer",
            "Float",
            "String",
            "DateTime",
            "List",
            "Object",
            "List<Integer>",
            "List<List<String>>",
            "Object{level: Float, unit: String}",
            "Object{a?: List<Object{b: DateTime}>}",
            "Object{}",
        ] {
            let ty = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(ty.to_string(), text);
        }
    }

    #[test]
    fn tolerates_whitespace() {
        let ty = parse("  Object { level : Float ,  unit? : List < String > , } ").unwrap();
        assert_eq!(ty.to_string(), "Object{level: Float, unit?: List<String>}");
    }

    #[test]
    fn errors_name_the_problem_and_its_column() {
        let cases = [
            ("Strng", 1, "unknown type `Strng`"),
            ("List<Strin>", 6, "unknown type `Strin`"),
            ("List<Integer", 13, "expected `>`"),
            ("Object{a Integer}", 10, "expected `:` after field `a`"),
            ("Object{a: Integer b: Float}", 19, "expected `,` or `}`"),
            ("Object{a: Integer, a: Float}", 20, "declared twice"),
            ("", 1, "empty type"),
            ("Integer Float", 9, "unexpected `Float`"),
            ("<", 1, "expected a type name"),
        ];
        for (text, column, needle) in cases {
            let err = parse(text).unwrap_err();
            assert_eq!(err.column, column, "{text}: {err}");
            assert!(err.message.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn refuses_absurd_nesting_without_overflowing() {
        let text = format!("{}Integer{}", "List<".repeat(10_000), ">".repeat(10_000));
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err}");
    }
}
