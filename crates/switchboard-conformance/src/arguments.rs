//! Arguments for calls the scenarios make on their own initiative: the smallest values a tool's
//! input schema (or a prompt's argument list) accepts, standing in for what a model would send.

use serde_json::{Map, Value, json};

/// Arguments for a tool: every required property gets its default, its constant, its first
/// allowed value, or a plain value of its type. Optional properties are left out.
pub(crate) fn for_tool(input_schema: &Value) -> Value {
    let properties = input_schema.get("properties").and_then(Value::as_object);
    let mut arguments = Map::new();
    let required = input_schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    for name in required {
        let property = properties.and_then(|p| p.get(name)).unwrap_or(&Value::Null);
        arguments.insert(name.to_owned(), example_value(property));
    }
    Value::Object(arguments)
}

/// Arguments for a prompt (`prompts/list` entry): a word for each required argument.
pub(crate) fn for_prompt(prompt: &Value) -> Value {
    let mut arguments = Map::new();
    for argument in prompt
        .get("arguments")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let required = argument.get("required").and_then(Value::as_bool) == Some(true);
        if let (true, Some(name)) = (required, argument.get("name").and_then(Value::as_str)) {
            arguments.insert(name.to_owned(), json!("example"));
        }
    }
    Value::Object(arguments)
}

/// Leaves out arguments whose value is `null`. For a caller, a `null` argument and a missing one
/// mean the same ("not provided"), and SEP-2243 treats them alike; the engine checks arguments
/// against the tool's schema, in which `null` is often not an allowed value.
pub(crate) fn without_nulls(arguments: &Value) -> Value {
    match arguments {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn example_value(property: &Value) -> Value {
    if let Some(value) = property.get("default").or_else(|| property.get("const")) {
        return value.clone();
    }
    if let Some(first) = property
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    // `type` may be one name or a list of names; a list is taken at its first non-null entry.
    let kind = match property.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(Value::Array(kinds)) => kinds
            .iter()
            .filter_map(Value::as_str)
            .find(|k| *k != "null")
            .unwrap_or("null"),
        _ => "string",
    };
    match kind {
        "integer" | "number" => json!(1),
        "boolean" => json!(true),
        "object" => for_tool(property),
        "array" => json!([]),
        "null" => Value::Null,
        _ => json!("example"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_arguments_fill_required_properties_only() {
        let schema = json!({
            "type": "object",
            "properties": {
                "region": {"type": "string"},
                "count": {"type": "integer"},
                "mode": {"type": "string", "enum": ["fast", "slow"]},
                "level": {"type": "number", "default": 2.5},
                "flag": {"type": ["null", "boolean"]},
                "nested": {"type": "object", "properties": {"k": {"type": "string"}}, "required": ["k"]},
                "optional": {"type": "string"}
            },
            "required": ["region", "count", "mode", "level", "flag", "nested", "undeclared"]
        });
        assert_eq!(
            for_tool(&schema),
            json!({
                "region": "example", "count": 1, "mode": "fast", "level": 2.5, "flag": true,
                "nested": {"k": "example"}, "undeclared": "example"
            })
        );
        assert_eq!(for_tool(&json!({"type": "object"})), json!({}));
    }

    #[test]
    fn prompt_arguments_fill_required_ones() {
        let prompt = json!({"name": "p", "arguments": [
            {"name": "topic", "required": true}, {"name": "style"}
        ]});
        assert_eq!(for_prompt(&prompt), json!({"topic": "example"}));
    }

    #[test]
    fn null_arguments_are_left_out() {
        assert_eq!(
            without_nulls(&json!({"a": 1, "b": null, "c": {"d": null}})),
            json!({"a": 1, "c": {"d": null}})
        );
    }
}
