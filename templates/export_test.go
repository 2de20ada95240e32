package templates

// WithoutFormatting is withoutFormatting, for the external tests.
var WithoutFormatting = withoutFormatting
