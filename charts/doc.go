// Package charts holds the Helm chart (charts/psc-operator) and the test that keeps it
// equivalent to the kustomize install (config/default).
package charts
