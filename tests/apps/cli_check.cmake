# wengert-train's command line, run as a user would: ctest wengert_train_cli.
#   cmake -DTRAIN=<wengert-train> -DWORK=<scratch dir> -P cli_check.cmake
# Exit codes (0 ok, 1 runtime error, 2 bad command line), --help, strict numbers and the size
# limits, a short real training run that writes metrics.csv and weights.wgrt, and --eval reading
# the model's shape from the file.
function(run expect_code)
  execute_process(COMMAND ${TRAIN} ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT code EQUAL expect_code)
    message(FATAL_ERROR "wengert-train ${ARGN}: exit ${code}, expected ${expect_code}\n${out}\n${err}")
  endif()
  set(out "${out}${err}" PARENT_SCOPE)
endfunction()
function(expect_in text what)
  string(FIND "${text}" "${what}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "expected '${what}' in:\n${text}")
  endif()
endfunction()

run(0 --help)
expect_in("${out}" "usage: wengert-train")
expect_in("${out}" "--eval WEIGHTS")
# The usage text is written by hand (CLI11 only parses): it must list every flag there is.
foreach(flag --mode --eval --data --epochs --batch --hidden --activation --lr --schedule --seed
             --limit --out --steps --help)
  expect_in("${out}" "  ${flag} ")
endforeach()
run(0 --help --epochs zero)  # --help before a bad value still prints the usage
expect_in("${out}" "usage: wengert-train")
run(2 --bogus)
expect_in("${out}" "unknown option '--bogus'")
run(2 stray)
expect_in("${out}" "unexpected argument 'stray'")
run(2 --hidden 256,)
expect_in("${out}" "--hidden needs sizes")
run(2 --epochs zero)
expect_in("${out}" "--epochs needs a positive integer")
run(2 --epochs)
expect_in("${out}" "--epochs needs a value")
run(2 --lr=)
expect_in("${out}" "--lr needs a value")
run(2 --mode xor --eval w.wgrt)
expect_in("${out}" "does not combine with --mode xor")
run(1 --data ${WORK}/no-such-dir)

# Strict numbers: a count is decimal digits only, a rate a plain decimal number; the error names
# the flag and the value as given.
foreach(bad "--lr;0x10" "--epochs; 3" "--epochs;3 " "--epochs;+3" "--epochs;1e3" "--epochs;010x"
            "--batch;0" "--seed;-1" "--steps;0x10" "--limit;-5" "--lr;inf" "--lr;nan" "--lr;1e999"
            "--lr; 0.1" "--lr;0.1x" "--lr;0")
  list(GET bad 0 flag)
  list(GET bad 1 value)
  run(2 ${flag} "${value}")
  expect_in("${out}" "${flag} needs a")
  expect_in("${out}" "'${value}'")
endforeach()
# Limits that keep memory sane (see --help): named with the flag, refused before any allocation.
run(2 --batch 4611686018427387904)
expect_in("${out}" "--batch must be at most 65536")
expect_in("${out}" "'4611686018427387904'")
run(2 --batch 65537)
expect_in("${out}" "--batch must be at most 65536")
run(2 --hidden 4000000000)
expect_in("${out}" "--hidden must be at most 16384")
expect_in("${out}" "'4000000000'")
run(2 --hidden 64,16385)
expect_in("${out}" "--hidden must be at most 16384")
run(2 --seed 18446744073709551616)
expect_in("${out}" "--seed must be at most 18446744073709551615")
# The limits themselves are accepted (xor mode parses --batch and --hidden but does not use them);
# flag=value, and a repeated flag's last value; fewer than ten steps (one report per step).
run(0 --mode=seed004 --mode xor --steps=5 --lr=0.25 --batch 65536 --hidden 16384,16384 --seed 0)
expect_in("${out}" "XOR: 2-4-1 network")
expect_in("${out}" "gradient descent lr 0.25")
expect_in("${out}" "step     5  loss")
expect_in("${out}" "final loss")

set(data /usr/share/datasets/fashion-mnist)
if(NOT EXISTS ${data}/train-images-idx3-ubyte.gz AND NOT EXISTS ${data}/train-images-idx3-ubyte)
  message(STATUS "skipping the training part: ${data} is absent (dataset-fashion-mnist)")
  return()
endif()
file(REMOVE_RECURSE ${WORK}/run)
run(0 --epochs 1 --limit 3000 --hidden 32 --activation tanh --out ${WORK}/run)
expect_in("${out}" "final test accuracy")
file(READ ${WORK}/run/metrics.csv csv)
expect_in("${csv}" "epoch,train_loss,train_accuracy,test_accuracy,seconds\n1,")
if(NOT EXISTS ${WORK}/run/weights.wgrt)
  message(FATAL_ERROR "no weights.wgrt written")
endif()
run(0 --eval ${WORK}/run/weights.wgrt)
expect_in("${out}" "(MLP 784-32-10, tanh): test accuracy 0.")
expect_in("${out}" "confusion matrix")
run(1 --eval ${WORK}/run/weights.wgrt --activation relu)
expect_in("${out}" "was trained with tanh but --activation asks for relu")
run(1 --eval ${WORK}/run/weights.wgrt --hidden 64)
expect_in("${out}" "holds an MLP 784-32-10 but --hidden asks for 784-64-10")
# A batch larger than the training rows is one batch of all of them.
run(0 --epochs 1 --limit 300 --batch 65536 --hidden 8 --out ${WORK}/full-batch)
expect_in("${out}" "batch 300, 1 epochs, 300 training")

