//! Patch metadata lookup for strategic merge patch: which type a field holds and its patch
//! strategy and merge key, resolved through [`TypeInfo`]. Parts the schema does not describe
//! are untyped, which gives JSON-merge-patch behaviour (maps merge, lists replace).

use crate::apiserver::schema::{ObjectSchema, PatchStrategy, TypeInfo, TypeRef};

/// The type a value being merged has, as far as the schema knows.
#[derive(Clone, Copy)]
pub(super) enum Schema<'a> {
    Object {
        def: &'a str,
        object: &'a ObjectSchema,
    },
    MapOf(&'a TypeRef),
    Untyped,
}

/// How a field's value is merged (the part of `x-kubernetes-patch-strategy` besides retainKeys).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Strategy {
    Default,
    Merge,
    Replace,
}

/// A field's patch strategy and merge key.
#[derive(Clone, Copy, Debug)]
pub(super) struct PatchMeta<'a> {
    pub strategy: Strategy,
    pub merge_key: Option<&'a str>,
}

const NO_META: PatchMeta<'static> = PatchMeta {
    strategy: Strategy::Default,
    merge_key: None,
};

pub(super) struct Lookup<'a> {
    types: &'a dyn TypeInfo,
}

impl<'a> Lookup<'a> {
    pub fn new(types: &'a dyn TypeInfo) -> Self {
        Lookup { types }
    }

    /// The schema of the object type named `def`, untyped when unknown.
    pub fn def(&self, def: &'a str) -> Schema<'a> {
        match self.types.object(def) {
            Some(object) => Schema::Object { def, object },
            None => Schema::Untyped,
        }
    }

    fn resolve(&self, ty: &'a TypeRef) -> Schema<'a> {
        match ty {
            TypeRef::Object(def) => self.def(def),
            TypeRef::Map(inner) => Schema::MapOf(inner),
            TypeRef::Array(_) | TypeRef::Scalar | TypeRef::Untyped => Schema::Untyped,
        }
    }

    /// The field's type and patch metadata when both sides hold an object.
    pub fn for_map(&self, schema: Schema<'a>, key: &str) -> (Schema<'a>, PatchMeta<'a>) {
        match schema {
            Schema::Object { object, .. } => match object.fields.get(key) {
                Some(field) => (
                    self.resolve(&field.ty),
                    meta(&field.patch_strategy, field.patch_merge_key.as_deref()),
                ),
                None => (Schema::Untyped, NO_META),
            },
            Schema::MapOf(inner) => (self.resolve(inner), NO_META),
            Schema::Untyped => (Schema::Untyped, NO_META),
        }
    }

    /// The type of the field's list items and the field's patch metadata.
    pub fn for_list(&self, schema: Schema<'a>, key: &str) -> (Schema<'a>, PatchMeta<'a>) {
        let (ty, meta) = match schema {
            Schema::Object { object, .. } => match object.fields.get(key) {
                Some(field) => (
                    &field.ty,
                    meta(&field.patch_strategy, field.patch_merge_key.as_deref()),
                ),
                None => return (Schema::Untyped, NO_META),
            },
            Schema::MapOf(inner) => (inner, NO_META),
            Schema::Untyped => return (Schema::Untyped, NO_META),
        };
        match ty {
            TypeRef::Array(item) => (self.resolve(item), meta),
            // Upstream treats a list held by a struct-typed field as a list of that struct.
            TypeRef::Object(_) => (self.resolve(ty), meta),
            _ => (Schema::Untyped, meta),
        }
    }
}

impl Schema<'_> {
    /// A name for error messages.
    pub fn name(&self) -> String {
        match self {
            Schema::Object { def, .. } => (*def).to_string(),
            Schema::MapOf(_) => "map".to_string(),
            Schema::Untyped => "untyped".to_string(),
        }
    }
}

fn meta<'a>(strategies: &[PatchStrategy], merge_key: Option<&'a str>) -> PatchMeta<'a> {
    // retainKeys only matters when computing patches; applying uses the other strategy.
    let strategy = strategies
        .iter()
        .find_map(|s| match s {
            PatchStrategy::Merge => Some(Strategy::Merge),
            PatchStrategy::Replace => Some(Strategy::Replace),
            PatchStrategy::RetainKeys => None,
        })
        .unwrap_or(Strategy::Default);
    PatchMeta {
        strategy,
        merge_key: merge_key.filter(|k| !k.is_empty()),
    }
}
