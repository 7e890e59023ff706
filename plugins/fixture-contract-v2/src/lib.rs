//! Test fixture: a plugin built against a hypothetical `tenken:plugin@2.0.0` contract, which
//! the 1.x host must refuse with an error naming both versions.

wit_bindgen::generate!({
    inline: "
        package tenken:plugin@2.0.0;
        interface checker {
            describe: func() -> string;
        }
        world office-check-v2 {
            export checker;
        }
    ",
    world: "office-check-v2",
});

struct Plugin;

impl exports::tenken::plugin::checker::Guest for Plugin {
    fn describe() -> String {
        "contract-v2".into()
    }
}

export!(Plugin);
