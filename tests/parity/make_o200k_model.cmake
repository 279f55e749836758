# Writes the synthetic llama model with the o200k_base vocabulary (tokenizer.ggml.pre "gpt-4o",
# gpt-oss's tokenizer) for the gpt-4o tokenizer parity tests, unless already there. Tiny weights
# (embd 64, 1 layer): only the tokenizer is compared.
if(NOT EXISTS "${VOCAB}")
  message(STATUS "SKIPPED: ${VOCAB} not found (tools/fetch_tokenizer_vocabs.sh --o200k builds it)")
  return()
endif()
get_filename_component(out_dir "${OUT}" DIRECTORY)
file(MAKE_DIRECTORY "${out_dir}")
if(NOT EXISTS "${OUT}")
  execute_process(COMMAND "${SLUICE}" synth "${OUT}" --arch llama --shape tiny --embd 64 --layers 1 --heads 2
                          --kv-heads 1 --ff 128 --type Q8_0 --embedding-type Q8_0 --vocab-from "${VOCAB}"
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "sluice synth failed for the o200k model")
  endif()
endif()
