//! Guest-side SDK for Rust plugins: [`Pack`] (a rule plugin as plain functions over
//! `tenken-model`) and, with the default `component` feature, the WIT bindings of both
//! worlds, the WIT ⇄ model conversions, master lookups through the imported `master`
//! interface, and the export macros: `office_check!` (a `Pack` as an office-check
//! component) and `master_format!` (a [`MasterFormat`] as a converter component).
//!
//! Why one SDK: an author's plugin depends on this crate only. Why the feature: the default
//! rule packs (`tenken-rulepack`) are also linked natively into the host (performance
//! baseline and differential oracle); they need `Pack` but none of the bindings, so the host
//! build never compiles wit-bindgen.

mod pack;

pub use pack::Pack;
pub use tenken_model;

#[cfg(all(feature = "component", target_arch = "wasm32"))]
mod bump;

/// The allocator `bump_allocator!` installs (wasm32 only).
#[cfg(all(feature = "component", target_arch = "wasm32"))]
#[doc(hidden)]
pub use bump::Bump;

/// Bindings of the `office-check` world (rule plugins).
#[cfg(feature = "component")]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "office-check",
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "tenken_guest::bindings",
    });
}

/// Bindings of the `master-format` world (converters). The shared `types` interface is the
/// one of [`bindings`], so each WIT ⇄ model conversion exists once.
#[cfg(feature = "component")]
pub mod converter_bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "master-format",
        with: {
            "tenken:plugin/types@1.0.0": crate::bindings::tenken::plugin::types,
        },
        pub_export_macro: true,
        export_macro_name: "export",
        default_bindings_module: "tenken_guest::converter_bindings",
    });
}

#[cfg(feature = "component")]
#[doc(hidden)]
pub mod format;
#[cfg(feature = "component")]
mod office;

#[cfg(feature = "component")]
pub use format::{DecodeError, MasterFormat};
#[cfg(feature = "component")]
pub use office::{HostMasters, context_from, file_from, finding_to, info_to, receipt_from};
