"""Each private Keras / keras-tuner API of `tf_selectivity.compat` still
exists in the installed versions and behaves as we rely on."""


# ------------------------------------------------------------------ Keras


# ------------------------------------------------------------ keras-tuner
