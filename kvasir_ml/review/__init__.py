"""Label-error discovery: out-of-fold predictions (``oof``), cleanlab rankings (``suspects``),
the Label Studio review project (``project``) and the noise-injection benchmark (``noise``,
``bench``)."""
