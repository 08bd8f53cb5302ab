"""Validates cloudkeep's OSCAL documents of one assessment.

    validate.py SCHEMA DIR

DIR holds catalog.json, assessment-plan.json and assessment-results.json
(the oscal/ folder of an audit package). Each document is read with
compliance-trestle's OSCAL models (pydantic: required fields, patterns,
types) and validated against NIST's OSCAL JSON schema (SCHEMA, the
complete schema: one definition per model, chosen by the document's root
key). The cross-references are checked too: the results import the plan,
every control they review is in the catalog, and every finding's related
observation exists. Prints one line per check and a closing
'N passed, N failed' line; exits non-zero when anything failed.
"""

import json
import pathlib
import sys

import jsonschema
import jsonschema._keywords
import jsonschema.exceptions
import regex
from trestle.oscal.assessment_plan import AssessmentPlan
from trestle.oscal.assessment_results import AssessmentResults
from trestle.oscal.catalog import Catalog

DOCUMENTS = {
    "catalog.json": ("catalog", Catalog),
    "assessment-plan.json": ("assessment-plan", AssessmentPlan),
    "assessment-results.json": ("assessment-results", AssessmentResults),
}


def main() -> int:
    # NIST's patterns use Unicode classes (\p{L}, \p{N}) that Python's re
    # does not know; the regex module does, with the same search API.
    jsonschema._keywords.re = regex
    schema_path, folder = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    schema = json.loads(schema_path.read_text())
    # The complete schema validates any OSCAL document: its root is a
    # oneOf over the models, so a document must be exactly one of them.
    validator = jsonschema.Draft7Validator(
        schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )
    passed = failed = 0
    docs = {}

    def check(name, ok, detail=""):
        nonlocal passed, failed
        if ok:
            passed += 1
            print(f"ok    {name}")
        else:
            failed += 1
            print(f"FAIL  {name}: {detail}")

    for file, (root, model) in DOCUMENTS.items():
        path = folder / file
        doc = json.loads(path.read_text())
        docs[file] = doc
        check(f"{file} has the root {root}", list(doc) == [root], list(doc))
        try:
            model.oscal_read(path)
            check(f"{file} reads as trestle's {model.__name__}", True)
        except Exception as e:  # trestle raises pydantic and its own errors
            check(f"{file} reads as trestle's {model.__name__}", False, e)
        # The root is a oneOf: name the closest model's error, not the union's.
        worst = jsonschema.exceptions.best_match(validator.iter_errors(doc))
        check(
            f"{file} is valid against NIST's OSCAL JSON schema",
            worst is None,
            worst and f"{list(worst.absolute_path)}: {worst.message[:300]}",
        )

    catalog = docs["catalog.json"]["catalog"]
    plan = docs["assessment-plan.json"]["assessment-plan"]
    results = docs["assessment-results.json"]["assessment-results"]
    controls = {c["id"] for g in catalog.get("groups", []) for c in g.get("controls", [])}
    check(
        "the results import the plan",
        results["import-ap"]["href"] == "assessment-plan.json",
        results["import-ap"],
    )
    for doc_name, doc in (("plan", plan), ("results", results["results"][0])):
        selected = {
            c["control-id"]
            for s in doc["reviewed-controls"]["control-selections"]
            for c in s.get("include-controls", [])
        }
        check(
            f"the {doc_name}' controls are the catalog's",
            selected == controls and controls,
            (selected, controls),
        )
    for result in results["results"]:
        observations = {o["uuid"] for o in result.get("observations", [])}
        for f in result.get("findings", []):
            related = {r["observation-uuid"] for r in f.get("related-observations", [])}
            check(
                f"finding {f['title']} relates existing observations",
                related <= observations,
                related - observations,
            )
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
