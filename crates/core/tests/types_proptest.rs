//! Property tests of the type system: a value generated to match a type always
//! validates, and a value with one mutation reports exactly the mutated path.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use switchyard_core::types::{Field, Strictness, Type};

fn arb_type() -> impl Strategy<Value = Type> {
    let leaf = prop_oneof![
        Just(Type::Boolean),
        Just(Type::Integer),
        Just(Type::Float),
        Just(Type::String),
        Just(Type::DateTime),
        Just(Type::List(None)),
        Just(Type::Object(None)),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            inner.clone().prop_map(|t| Type::List(Some(Box::new(t)))),
            prop::collection::btree_map("[a-z][a-z0-9_]{0,5}", (inner, any::<bool>()), 0..6)
                .prop_map(|fields| {
                    Type::Object(Some(
                        fields
                            .into_iter()
                            .map(|(name, (ty, optional))| Field { name, ty, optional })
                            .collect(),
                    ))
                }),
        ]
    })
}

fn arb_value_for(ty: &Type) -> BoxedStrategy<Value> {
    match ty {
        Type::Boolean => any::<bool>().prop_map(Value::Bool).boxed(),
        Type::Integer => any::<i64>().prop_map(|i| json!(i)).boxed(),
        Type::Float => prop_oneof![
            any::<i32>().prop_map(|i| json!(i)),
            (-1e9f64..1e9).prop_map(|f| json!(f))
        ]
        .boxed(),
        Type::String => ".{0,12}".prop_map(Value::String).boxed(),
        Type::DateTime => (0i64..4_000_000_000)
            .prop_map(|secs| {
                Value::String(
                    chrono::DateTime::from_timestamp(secs, 0)
                        .unwrap()
                        .to_rfc3339(),
                )
            })
            .boxed(),
        Type::List(None) => prop::collection::vec(any::<i32>().prop_map(|i| json!(i)), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Type::Object(None) => Just(json!({"anything": [1, "x"]})).boxed(),
        Type::List(Some(inner)) => prop::collection::vec(arb_value_for(inner), 0..4)
            .prop_map(Value::Array)
            .boxed(),
        Type::Object(Some(fields)) => {
            let per_field: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
                .iter()
                .map(|f| {
                    let name = f.name.clone();
                    let value = arb_value_for(&f.ty);
                    if f.optional {
                        prop_oneof![
                            Just(None),
                            Just(Some((name.clone(), Value::Null))),
                            value.prop_map(move |v| Some((name.clone(), v)))
                        ]
                        .boxed()
                    } else {
                        value.prop_map(move |v| Some((name.clone(), v))).boxed()
                    }
                })
                .collect();
            per_field
                .prop_map(|entries| {
                    Value::Object(entries.into_iter().flatten().collect::<Map<_, _>>())
                })
                .boxed()
        }
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

/// Every node whose value the type actually checks, with its path and type.
fn checked_nodes(ty: &Type, value: &Value, path: Vec<Seg>, out: &mut Vec<(Vec<Seg>, Type)>) {
    out.push((path.clone(), ty.clone()));
    match (ty, value) {
        (Type::List(Some(inner)), Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let mut p = path.clone();
                p.push(Seg::Index(i));
                checked_nodes(inner, item, p, out);
            }
        }
        (Type::Object(Some(fields)), Value::Object(map)) => {
            for f in fields {
                if let Some(v) = map.get(&f.name).filter(|v| !v.is_null()) {
                    let mut p = path.clone();
                    p.push(Seg::Key(f.name.clone()));
                    checked_nodes(&f.ty, v, p, out);
                }
            }
        }
        _ => {}
    }
}

/// A value no value of `ty` can be.
fn wrong_value(ty: &Type) -> Value {
    match ty {
        Type::Boolean | Type::Float | Type::DateTime => json!("not-this"),
        Type::Integer => json!(1.5),
        Type::String => json!(7),
        Type::List(_) => json!({"not": "a list"}),
        Type::Object(_) => json!(["not", "an", "object"]),
    }
}

fn replace(value: &mut Value, path: &[Seg], with: Value) {
    match path.split_first() {
        None => *value = with,
        Some((Seg::Key(k), rest)) => replace(value.get_mut(k.as_str()).unwrap(), rest, with),
        Some((Seg::Index(i), rest)) => replace(value.get_mut(*i).unwrap(), rest, with),
    }
}

fn render(root: &str, path: &[Seg]) -> String {
    let mut out = root.to_string();
    for seg in path {
        match seg {
            Seg::Key(k) => out.push_str(&format!(".{k}")),
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn generated_values_validate((ty, value) in arb_type().prop_flat_map(|t| { let v = arb_value_for(&t); (Just(t), v) })) {
        prop_assert!(ty.validate("v", &value, Strictness::Exact).is_ok(), "{} rejected {}", ty, value);
    }

    #[test]
    fn types_print_and_parse_back(ty in arb_type()) {
        prop_assert_eq!(Type::parse(&ty.to_string()).unwrap(), ty);
    }

    #[test]
    fn one_mutation_is_reported_at_its_exact_path(
        (ty, value, pick) in arb_type().prop_flat_map(|t| { let v = arb_value_for(&t); (Just(t), v, any::<prop::sample::Index>()) })
    ) {
        let mut nodes = Vec::new();
        checked_nodes(&ty, &value, Vec::new(), &mut nodes);
        let (path, node_ty) = pick.get(&nodes).clone();
        let mut mutated = value.clone();
        replace(&mut mutated, &path, wrong_value(&node_ty));
        let err = ty.validate("v", &mutated, Strictness::Exact).unwrap_err();
        prop_assert_eq!(err.path, render("v", &path), "type {} value {}", ty, mutated);
    }
}
