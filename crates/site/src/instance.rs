//! Instances: typed attribute values of one template, and the alarms watching them.

use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use switchyard_core::Failure;
use switchyard_core::config::{AlarmDef, TemplateDef};
use switchyard_core::error::codes;
use switchyard_core::types::Strictness;

/// An alarm that has just become active.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmTrigger {
    /// Index of the alarm in its template.
    pub index: usize,
    /// The alarm's name.
    pub alarm: String,
    /// The attribute that crossed the threshold.
    pub attribute: String,
    /// Its new value.
    pub value: Value,
}

/// One instance at a site.
#[derive(Debug)]
pub struct Instance {
    code: String,
    template_name: String,
    template: Arc<TemplateDef>,
    values: RwLock<BTreeMap<String, Value>>,
    /// Whether each alarm of the template is active now.
    alarm_active: Mutex<Vec<bool>>,
}

impl Instance {
    /// An instance with `initial` values from its definition, overridden by `stored`
    /// values from an earlier run (those of the wrong type for the current template are
    /// dropped). Alarms start in the state the values put them in, without triggering.
    pub fn new(
        code: &str,
        template_name: &str,
        template: Arc<TemplateDef>,
        initial: &BTreeMap<String, Value>,
        stored: BTreeMap<String, Value>,
    ) -> Instance {
        let mut values = BTreeMap::new();
        for (name, ty) in &template.attributes {
            let value = match stored.get(name) {
                Some(v) if ty.validate(name, v, Strictness::Exact).is_ok() => v.clone(),
                Some(v) => {
                    tracing::warn!(instance = code, attribute = %name, stored = %v, "stored value no longer matches the attribute type; using the configured value");
                    initial.get(name).cloned().unwrap_or(Value::Null)
                }
                None => initial.get(name).cloned().unwrap_or(Value::Null),
            };
            values.insert(name.clone(), value);
        }
        let alarm_active = template
            .alarms
            .iter()
            .map(|a| values.get(&a.attribute).is_some_and(|v| is_active(a, v)))
            .collect();
        Instance {
            code: code.to_string(),
            template_name: template_name.to_string(),
            template,
            values: RwLock::new(values),
            alarm_active: Mutex::new(alarm_active),
        }
    }

    /// The instance code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The template's name.
    pub fn template_name(&self) -> &str {
        &self.template_name
    }

    /// The template.
    pub fn template(&self) -> &TemplateDef {
        &self.template
    }

    /// One attribute value.
    pub fn get(&self, name: &str) -> Result<Value, Failure> {
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        values.get(name).cloned().ok_or_else(|| self.unknown(name))
    }

    /// Several attribute values, all or none.
    pub fn get_many(&self, names: &[String]) -> Result<BTreeMap<String, Value>, Failure> {
        let values = self.values.read().unwrap_or_else(|p| p.into_inner());
        names
            .iter()
            .map(|n| {
                values
                    .get(n)
                    .cloned()
                    .map(|v| (n.clone(), v))
                    .ok_or_else(|| self.unknown(n))
            })
            .collect()
    }

    /// Checks new values against the attribute types without applying them.
    pub fn check(&self, values: &BTreeMap<String, Value>) -> Result<(), Failure> {
        for (name, value) in values {
            let ty = self
                .template
                .attributes
                .get(name)
                .ok_or_else(|| self.unknown(name))?;
            ty.validate(name, value, Strictness::Exact).map_err(|e| {
                Failure::permanent(
                    codes::TYPE_MISMATCH,
                    format!("{}: attribute {name} is {ty}: {}", self.code, e.reason),
                )
            })?;
        }
        Ok(())
    }

    /// Applies checked values; returns the alarms that became active.
    pub fn apply(&self, new_values: &BTreeMap<String, Value>) -> Vec<AlarmTrigger> {
        {
            let mut values = self.values.write().unwrap_or_else(|p| p.into_inner());
            for (name, value) in new_values {
                let mut value = value.clone();
                if let Some(ty) = self.template.attributes.get(name) {
                    ty.normalize(&mut value);
                }
                values.insert(name.clone(), value);
            }
        }
        let mut active = self.alarm_active.lock().unwrap_or_else(|p| p.into_inner());
        let mut triggers = Vec::new();
        for (index, alarm) in self.template.alarms.iter().enumerate() {
            let Some(value) = new_values.get(&alarm.attribute) else {
                continue;
            };
            let now = is_active(alarm, value);
            if now && !active[index] {
                triggers.push(AlarmTrigger {
                    index,
                    alarm: alarm.name.clone(),
                    attribute: alarm.attribute.clone(),
                    value: value.clone(),
                });
            }
            active[index] = now;
        }
        triggers
    }

    fn unknown(&self, name: &str) -> Failure {
        Failure::permanent(
            codes::NOT_FOUND,
            format!(
                "{} (template {}) has no attribute `{name}`",
                self.code, self.template_name
            ),
        )
    }
}

fn is_active(alarm: &AlarmDef, value: &Value) -> bool {
    let Some(v) = value.as_f64() else {
        return false;
    };
    alarm.above.is_some_and(|limit| v > limit) || alarm.below.is_some_and(|limit| v < limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use switchyard_core::types::Type;

    fn tank() -> Arc<TemplateDef> {
        Arc::new(TemplateDef {
            attributes: BTreeMap::from([
                ("Level".into(), Type::Float),
                ("Name".into(), Type::String),
            ]),
            scripts: BTreeMap::new(),
            alarms: vec![AlarmDef {
                name: "HighLevel".into(),
                attribute: "Level".into(),
                above: Some(90.0),
                below: None,
                on_trigger: None,
            }],
        })
    }

    #[test]
    fn wrong_types_name_the_attribute_and_both_types() {
        let t = Instance::new("T-1", "Tank", tank(), &BTreeMap::new(), BTreeMap::new());
        let err = t
            .check(&BTreeMap::from([("Level".into(), json!("high"))]))
            .unwrap_err();
        assert_eq!(err.code, codes::TYPE_MISMATCH);
        assert_eq!(
            err.message,
            r#"T-1: attribute Level is Float: expected Float, found String "high""#
        );
        let err = t
            .check(&BTreeMap::from([("Colour".into(), json!(1))]))
            .unwrap_err();
        assert_eq!(err.message, "T-1 (template Tank) has no attribute `Colour`");
    }

    #[test]
    fn alarms_trigger_once_per_transition() {
        let t = Instance::new(
            "T-1",
            "Tank",
            tank(),
            &BTreeMap::from([("Level".into(), json!(10.0))]),
            BTreeMap::new(),
        );
        let set = |v: f64| t.apply(&BTreeMap::from([("Level".into(), json!(v))])).len();
        assert_eq!(set(95.0), 1);
        assert_eq!(set(96.0), 0, "still above: no new trigger");
        assert_eq!(set(80.0), 0);
        assert_eq!(set(91.0), 1, "crossed again");
    }

    #[test]
    fn stored_values_win_unless_their_type_changed() {
        let initial = BTreeMap::from([("Level".into(), json!(1.0)), ("Name".into(), json!("a"))]);
        let stored = BTreeMap::from([("Level".into(), json!(55.5)), ("Name".into(), json!(7))]);
        let t = Instance::new("T-1", "Tank", tank(), &initial, stored);
        assert_eq!(t.get("Level").unwrap(), json!(55.5));
        assert_eq!(t.get("Name").unwrap(), json!("a"));
    }
}
