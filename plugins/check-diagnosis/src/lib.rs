//! The `diagnosis` rules of the default rule pack, exported as an office-check component.
tenken_guest::office_check!(tenken_rulepack::DIAGNOSIS);
