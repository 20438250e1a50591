"""A GX Checkpoint action that builds Data Docs from validation results with PII masked.

Kept in its own module, imported only when a Checkpoint is built: importing GX is slow, and
pydantic (v1, as GX uses it) needs real annotations here, not postponed ones.
"""

from typing import Literal

from great_expectations.checkpoint.actions import UpdateDataDocsAction

from sapnhap.datasets import get_dataset


class MaskedDataDocsAction(UpdateDataDocsAction):
    """Mask personal data in every result of the run, store it, then update Data Docs.

    A subclass of ``UpdateDataDocsAction`` on purpose: GX runs data-docs actions before all
    others, so a separate masking action would run too late. The docs render from the
    validation results store, hence the masked result is stored again first (R4).
    """

    type: Literal["sapnhap_masked_data_docs"] = "sapnhap_masked_data_docs"
    dataset: str

    def run(self, checkpoint_result, action_context=None) -> dict:  # noqa: ANN001
        from sapnhap.quality.validate import mask_result

        ds = get_dataset(self.dataset)
        store = self._resolve_context().context.validation_results_store
        for identifier, suite_result in checkpoint_result.run_results.items():
            for r in suite_result.results:
                mask_result(ds, r.expectation_config.kwargs, r.result)
            store.set(identifier, suite_result)
        return super().run(checkpoint_result, action_context)
