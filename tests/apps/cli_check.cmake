# wengert-train's command line, run as a user would: ctest wengert_train_cli.
#   cmake -DTRAIN=<wengert-train> -DWORK=<scratch dir> -P cli_check.cmake
# Exit codes (0 ok, 1 runtime error, 2 bad command line), --help, strict numbers and the size
# limits, a short real training run that writes metrics.csv and weights.wgrt, --eval reading
# the model's shape from the file, the output-directory rules (no overwriting a run without
# --force, output paths checked before training), and resumable training: stopped, resumed and
# SIGKILLed runs end byte-identical to a run straight through.
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
foreach(flag --mode --model --eval --data --epochs --batch --hidden --activation --lr --schedule --seed
             --limit --out --force --resume --checkpoint-every --stop-after --steps --threads
             --help)
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
run(2 --resume ${WORK}/r --hidden 32)
expect_in("${out}" "--hidden cannot be given with --resume")
run(2 --resume ${WORK}/r --out ${WORK}/elsewhere)
expect_in("${out}" "--out cannot be given with --resume")
run(2 --resume ${WORK}/r --force)
expect_in("${out}" "--force cannot be given with --resume")
run(2 --model resnet)
expect_in("${out}" "--model must be mlp or cnn, got 'resnet'")
run(2 --model cnn --hidden 32,64)
expect_in("${out}" "--model cnn takes three --hidden sizes")
run(2 --model cnn --activation tanh)
expect_in("${out}" "--model cnn uses relu")
run(2 --threads 0)
expect_in("${out}" "--threads needs a positive integer")
run(2 --checkpoint-every 0)
expect_in("${out}" "--checkpoint-every needs a positive integer")
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
file(REMOVE_RECURSE ${WORK}/run ${WORK}/full-batch ${WORK}/a ${WORK}/b ${WORK}/k ${WORK}/d
     ${WORK}/t0 ${WORK}/t1 ${WORK}/t2)
run(1 --resume ${WORK}/run)
expect_in("${out}" "there is no checkpoint")
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
# The CNN, narrow (4 and 8 channels, 16 units) and on 512 examples to take a few seconds: it
# trains, writes the same files, is rebuilt from its weights by --eval, and resumes.
file(REMOVE_RECURSE ${WORK}/cnn)
run(0 --model cnn --hidden 4,8,16 --epochs 2 --stop-after 1 --limit 512 --batch 64
    --out ${WORK}/cnn)
expect_in("${out}" "CNN 784-4-8-16-10, relu")
expect_in("${out}" "stopped after epoch 1 of 2")
run(0 --resume ${WORK}/cnn)
expect_in("${out}" "resuming")
expect_in("${out}" "final test accuracy")
file(READ ${WORK}/cnn/metrics.csv cnn_csv)
expect_in("${cnn_csv}" "\n1,")
expect_in("${cnn_csv}" "\n2,")
run(0 --eval ${WORK}/cnn/weights.wgrt)
expect_in("${out}" "(CNN 784-4-8-16-10, relu): test accuracy 0.")
expect_in("${out}" "confusion matrix")
run(1 --eval ${WORK}/cnn/weights.wgrt --model mlp)
expect_in("${out}" "holds a CNN but --model asks for an MLP")
# weights.wgrt is the model's state dict, with input.norm and model.activation.
file(READ ${WORK}/run/weights.wgrt head LIMIT 8 HEX)
if(NOT head STREQUAL "5747525402000000")
  message(FATAL_ERROR "weights.wgrt is not a version-2 state file: ${head}")
endif()
# The run directory is kept: a new run into it is refused without --force (its metrics would be
# lost), and with --force it replaces the old run.
run(2 --epochs 1 --limit 300 --hidden 8 --out ${WORK}/run)
expect_in("${out}" "already holds a run (metrics.csv, checkpoint.wgrt, weights.wgrt)")
expect_in("${out}" "--resume ${WORK}/run")
file(READ ${WORK}/run/metrics.csv csv2)
if(NOT csv2 STREQUAL csv)
  message(FATAL_ERROR "a refused run changed metrics.csv")
endif()
run(0 --epochs 1 --limit 300 --hidden 8 --out ${WORK}/run --force)
# An output path that is a directory is found before training, not after it.
file(MAKE_DIRECTORY ${WORK}/d/weights.wgrt)
run(1 --epochs 1 --limit 300 --hidden 8 --out ${WORK}/d)
expect_in("${out}" "cannot write ${WORK}/d/weights.wgrt: it is a directory")
string(FIND "${out}" "epoch 1/1" trained)
if(NOT trained EQUAL -1)
  message(FATAL_ERROR "trained before finding that weights.wgrt cannot be written:\n${out}")
endif()

# Resumable training: 4 epochs straight, or 2, stop, and resume 2 (with a mid-epoch checkpoint
# every 7 batches): the weights files are byte-identical, and metrics.csv holds each epoch once.
# (--hidden 64: a checkpoint of 600 KB, large enough for a kill in the middle of its data below.)
set(cfg --epochs 4 --limit 1200 --batch 64 --hidden 64 --seed 4)
run(0 ${cfg} --out ${WORK}/a)
run(0 ${cfg} --out ${WORK}/b --stop-after 2 --checkpoint-every 7)
expect_in("${out}" "stopped after epoch 2 of 4")
expect_in("${out}" "continue with: wengert-train --resume ${WORK}/b")
if(EXISTS ${WORK}/b/weights.wgrt)
  message(FATAL_ERROR "a stopped run wrote final weights")
endif()
file(WRITE ${WORK}/b/checkpoint.wgrt.tmp "half a checkpoint")  # as a killed save leaves it
run(0 --resume ${WORK}/b)
expect_in("${out}" "removed ${WORK}/b/checkpoint.wgrt.tmp")
expect_in("${out}" "resuming ${WORK}/b/checkpoint.wgrt at epoch 3, batch 0 of 19")
expect_in("${out}" "epoch  4/4")
# Run `dir` ended as run a did (byte-identical weights) and its metrics.csv holds each of the 4
# epochs once.
function(expect_same_as_a dir what)
  file(SHA256 ${WORK}/a/weights.wgrt wa)
  file(SHA256 ${dir}/weights.wgrt wd)
  if(NOT wa STREQUAL wd)
    message(FATAL_ERROR "${what} differs from training straight through")
  endif()
  file(STRINGS ${dir}/metrics.csv rows)
  list(LENGTH rows nrows)
  if(NOT nrows EQUAL 5)
    message(FATAL_ERROR "metrics.csv of ${what} has ${nrows} lines, expected 5: ${rows}")
  endif()
endfunction()
expect_same_as_a(${WORK}/b "training stopped and resumed")
# SIGKILLed in the middle of writing a checkpoint (fault injection: WENGERT_FAULT_KILL_SAVE=K:STAGE
# kills the process at that stage of its K-th save), three times at three stages, resumed each
# time from whatever checkpoint is left: the run still ends byte-identical to run a.
function(killed_at spec)
  set(ENV{WENGERT_FAULT_KILL_SAVE} ${spec})
  execute_process(COMMAND ${TRAIN} ${ARGN} RESULT_VARIABLE code OUTPUT_VARIABLE o ERROR_VARIABLE e)
  unset(ENV{WENGERT_FAULT_KILL_SAVE})
  if(NOT code MATCHES "[Kk]illed")
    message(FATAL_ERROR "WENGERT_FAULT_KILL_SAVE=${spec}: the run was not killed (${code})\n${o}${e}")
  endif()
endfunction()
# Saves every 4 batches of 19 and at each epoch's end: 5 per epoch.
killed_at(6:mid ${cfg} --out ${WORK}/k --checkpoint-every 4)   # epoch 2, batch 4's save
if(NOT EXISTS ${WORK}/k/checkpoint.wgrt.tmp)
  message(FATAL_ERROR "the kill did not land mid-save (no checkpoint.wgrt.tmp)")
endif()
killed_at(3:synced --resume ${WORK}/k --checkpoint-every 4)     # from epoch 2 batch 0: batch 12
killed_at(2:written --resume ${WORK}/k --checkpoint-every 4)    # from batch 8: batch 16
run(0 --resume ${WORK}/k --checkpoint-every 4)
expect_in("${out}" "at epoch 2, batch 12 of 19")
expect_in("${out}" "removed ${WORK}/k/checkpoint.wgrt.tmp")
expect_same_as_a(${WORK}/k "training killed mid-save and resumed")

# A batch larger than the training rows is one batch of all of them.
run(0 --epochs 1 --limit 300 --batch 65536 --hidden 8 --out ${WORK}/full-batch)
expect_in("${out}" "batch 300, 1 epochs, 300 training")


# Data parallelism: --threads 1 is the plain run, byte for byte; --threads 2 trains (each batch
# split over two threads) and says what --batch means.
run(0 --epochs 1 --limit 300 --hidden 8 --out ${WORK}/t0)
run(0 --epochs 1 --limit 300 --hidden 8 --threads 1 --out ${WORK}/t1)
file(SHA256 ${WORK}/t0/weights.wgrt w0)
file(SHA256 ${WORK}/t1/weights.wgrt w1)
if(NOT w0 STREQUAL w1)
  message(FATAL_ERROR "--threads 1 trained other weights than the default run")
endif()
run(0 --epochs 1 --limit 1000 --batch 50 --hidden 16 --lr 0.01 --threads 2 --out ${WORK}/t2)
expect_in("${out}" "data parallel: 1 rank x 2 threads; --batch 50 is the global batch")
string(REGEX MATCH "final test accuracy 0\\.([0-9]+)" m "${out}")
if(NOT m OR CMAKE_MATCH_1 LESS 5000)
  message(FATAL_ERROR "--threads 2 did not train (test accuracy below 0.5):\n${out}")
endif()
