// Package validation checks and defaults PodSecurityConstraints objects in process with the
// CRD's own schema: the OpenAPI rules, list types and CEL rules the API server runs, and its
// defaults. The API server remains the first gate; this is the second, for specs that reach
// the operator some other way (the render command, objects stored before a CRD upgrade).
package validation

import (
	"context"
	"encoding/json"
	"fmt"

	apiextensions "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	structuralpruning "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/runtime"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"sigs.k8s.io/yaml"

	"github.com/podsecurity/psc-operator/api/v1alpha1"
	"github.com/podsecurity/psc-operator/config/crd"
)

// Validator validates and defaults PodSecurityConstraints objects. It is safe for concurrent
// use.
type Validator struct {
	structural *structuralschema.Structural
	schema     apiservervalidation.SchemaValidator
	cel        *cel.Validator
}

// New builds a Validator from the embedded CRD.
func New() (*Validator, error) {
	def := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal(crd.PodSecurityConstraints, def); err != nil {
		return nil, fmt.Errorf("parsing embedded CRD: %w", err)
	}
	var versioned *apiextensionsv1.JSONSchemaProps
	for _, v := range def.Spec.Versions {
		if v.Name == v1alpha1.GroupVersion.Version && v.Schema != nil {
			versioned = v.Schema.OpenAPIV3Schema
		}
	}
	if versioned == nil {
		return nil, fmt.Errorf("embedded CRD has no schema for version %s", v1alpha1.GroupVersion.Version)
	}
	internal := &apiextensions.JSONSchemaProps{}
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(versioned, internal, nil); err != nil {
		return nil, fmt.Errorf("converting CRD schema: %w", err)
	}
	structural, err := structuralschema.NewStructural(internal)
	if err != nil {
		return nil, fmt.Errorf("building structural schema: %w", err)
	}
	schemaValidator, _, err := apiservervalidation.NewSchemaValidator(internal)
	if err != nil {
		return nil, fmt.Errorf("building schema validator: %w", err)
	}
	return &Validator{
		structural: structural,
		schema:     schemaValidator,
		cel:        cel.NewValidator(structural, true, celconfig.PerCallLimit),
	}, nil
}

// DefaultAndValidate takes an object in its JSON form (as decoded from YAML or JSON), reports
// unknown fields, applies the CRD's defaults, and validates it as the API server would. The
// input map is modified. Errors carry the API server's paths and messages.
func (v *Validator) DefaultAndValidate(ctx context.Context, obj map[string]interface{}) (*v1alpha1.PodSecurityConstraints, field.ErrorList) {
	var errs field.ErrorList
	// Decoders of YAML give float64 for every number; the API server's JSON decoder gives
	// int64 for whole numbers, and CEL rules compare them as such.
	if err := normalizeNumbers(obj); err != nil {
		return nil, field.ErrorList{field.InternalError(nil, err)}
	}
	unknown := structuralpruning.PruneWithOptions(obj, v.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
	for _, path := range unknown {
		errs = append(errs, &field.Error{Type: field.ErrorTypeNotSupported, Field: path, BadValue: "", Detail: "unknown field"})
	}
	structuraldefaulting.Default(obj, v.structural)
	errs = append(errs, v.validateObject(ctx, obj)...)
	if len(errs) > 0 {
		return nil, errs
	}
	typed := &v1alpha1.PodSecurityConstraints{}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, typed); err != nil {
		return nil, field.ErrorList{field.InternalError(nil, fmt.Errorf("decoding object: %w", err))}
	}
	return typed, nil
}

// Validate checks a typed object (for example one read from the API server) without
// defaulting it.
func (v *Validator) Validate(ctx context.Context, obj *v1alpha1.PodSecurityConstraints) field.ErrorList {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(nil, fmt.Errorf("encoding object: %w", err))}
	}
	// The status is the operator's and not the user's to get wrong.
	delete(u, "status")
	return v.validateObject(ctx, u)
}

func (v *Validator) validateObject(ctx context.Context, obj map[string]interface{}) field.ErrorList {
	errs := apiservervalidation.ValidateCustomResource(nil, obj, v.schema)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, v.structural, obj)...)
	celErrs, _ := v.cel.Validate(ctx, nil, v.structural, obj, nil, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// normalizeNumbers re-decodes obj in place the way the API server does.
func normalizeNumbers(obj map[string]interface{}) error {
	data, err := json.Marshal(obj)
	if err != nil {
		return fmt.Errorf("encoding object: %w", err)
	}
	normalized := map[string]interface{}{}
	if err := utiljson.Unmarshal(data, &normalized); err != nil {
		return fmt.Errorf("decoding object: %w", err)
	}
	clear(obj)
	for k, v := range normalized {
		obj[k] = v
	}
	return nil
}
