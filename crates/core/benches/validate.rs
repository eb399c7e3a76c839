//! (d) Validating a 20-field object parameter set (target <= 5 µs), beside the cost of
//! merely parsing the same JSON body (measured in the same run, for scale).
//!
//! Run: `cargo bench -p switchyard-core --bench validate`.

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use std::hint::black_box;
use switchyard_core::types::{ParamDef, Type, validate_params};

fn defs() -> Vec<ParamDef> {
    let types = [
        "String",
        "Integer",
        "Float",
        "Boolean",
        "DateTime",
        "List<Integer>",
        "Object{a: Integer, b?: String}",
        "List<Object{qty: Integer, sku: String}>",
    ];
    (0..20)
        .map(|i| {
            ParamDef::required(
                format!("field_{i:02}"),
                Type::parse(types[i % types.len()]).unwrap(),
            )
        })
        .collect()
}

fn body() -> Value {
    let values = [
        json!("North tank"),
        json!(42),
        json!(3.25),
        json!(true),
        json!("2026-11-28T11:28:13Z"),
        json!([1, 2, 3]),
        json!({"a": 1, "b": "x"}),
        json!([{"qty": 1, "sku": "A-1"}, {"qty": 2, "sku": "B-2"}]),
    ];
    let map = (0..20)
        .map(|i| (format!("field_{i:02}"), values[i % values.len()].clone()))
        .collect();
    Value::Object(map)
}

fn bench(c: &mut Criterion) {
    let defs = defs();
    let body = body();
    validate_params(&defs, &body).unwrap();
    let text = serde_json::to_string(&body).unwrap();
    let mut group = c.benchmark_group("validate");
    group.bench_function("validate_20_field_params", |b| {
        b.iter(|| validate_params(black_box(&defs), black_box(&body)).unwrap())
    });
    group.bench_function("parse_same_body_json_for_scale", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(&text)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
