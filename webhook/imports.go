package webhook

// imported_environment_changed (its event and its kind have one name): an environment
// that an environment imports got a new revision.
const (
	ImportedEnvironmentChanged     = "imported_environment_changed"
	KindImportedEnvironmentChanged = "imported_environment_changed"
)
