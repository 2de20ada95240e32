package templates

// WithoutFormatting is withoutFormatting, for the external tests.
var WithoutFormatting = withoutFormatting

// FoundOf is foundOf, for the external tests.
var FoundOf = foundOf
